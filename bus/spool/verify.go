package spool

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// Report is the health of a spool directory, from Verify.
type Report struct {
	Dir       string
	Encrypted bool // some entries are encrypted
	// Decrypted is true when a key was given and every intact encrypted
	// entry was decrypted and authenticated with it.
	Decrypted bool
	Segments  int
	// Entries, Records and Bytes count the intact entries in the segment
	// files, acknowledged or not (a head segment keeps its acknowledged
	// entries until all of it is done).
	Entries int64
	Records int64
	Bytes   int64
	Lanes   []LaneReport // by topic, then priority from highest
	// Damage is everything found, spool.meta's and every lane's, with the
	// entries (and where known the records) each cost: what Open and the
	// reads after it would count.
	Damage []Recovery
}

// LaneReport is one lane of a Report.
type LaneReport struct {
	Topic    string
	Priority int
	Segments int
	Entries  int64
	Records  int64
	Bytes    int64
	// FirstSeq and LastSeq bound the intact entries' seqs; 0 when none.
	FirstSeq, LastSeq uint64
	// HeadSeq is the first entry not yet acknowledged, from the head file;
	// 0 when there is none or it is damaged.
	HeadSeq uint64
	Damage  []Recovery
}

// Healthy reports whether Verify found no damage at all.
func (r Report) Healthy() bool { return len(r.Damage) == 0 }

// Lost sums the entries and records the damage cost; records is a lower
// bound where a Recovery's records are not exact.
func (r Report) Lost() (entries, records int64) {
	for _, d := range r.Damage {
		entries += d.Entries
		records += d.Records
	}
	return entries, records
}

// Verify reads the spool in dir and reports its health: every segment is
// read to its end (its seal is checked against what it holds, not
// trusted), the gaps between segments are counted from their bounds, and
// the head files and spool.meta are checked. With keyFile it also
// decrypts every encrypted entry. It changes nothing and takes no lock,
// so it can look at the spool of a running ferry, whose newest entries it
// may see half-written and report as a torn tail. An error means the
// directory could not be read as a spool at all (or the key is wrong).
func Verify(dir, keyFile string) (Report, error) {
	rep := Report{Dir: dir}
	if _, err := os.Stat(filepath.Join(dir, lanesDir)); err != nil {
		return rep, fmt.Errorf("spool: verify %s: not a spool directory: %w", dir, err)
	}
	m, raw, damaged, err := readMeta(dir)
	if err != nil {
		return rep, err
	}
	if damaged {
		rep.Damage = append(rep.Damage, Recovery{Kind: DamageMeta, Segment: filepath.Join(dir, metaName), Bytes: int64(len(raw))})
	}
	var sl *sealer
	if keyFile != "" {
		key, err := readKey(keyFile)
		if err != nil {
			return rep, fmt.Errorf("spool: key_file: %w", err)
		}
		if !damaged && m.KeyCheck != "" && m.KeyCheck != keyCheck(key) {
			return rep, fmt.Errorf("%w: %s does not open the spool in %s", ErrWrongKey, keyFile, dir)
		}
		if sl, err = newSealer(key); err != nil {
			return rep, fmt.Errorf("spool: %w", err)
		}
	}
	rep.Encrypted = m.KeyCheck != ""
	rep.Decrypted = sl != nil
	err = walkLanes(filepath.Join(dir, lanesDir), func(name string, prio int, ldir string) error {
		lr, enc, err := verifyLane(ldir, sl)
		if err != nil {
			return fmt.Errorf("lane %s/%d: %w", name, prio, err)
		}
		lr.Topic, lr.Priority = name, prio
		rep.Encrypted = rep.Encrypted || enc
		rep.Lanes = append(rep.Lanes, lr)
		rep.Segments += lr.Segments
		rep.Entries += lr.Entries
		rep.Records += lr.Records
		rep.Bytes += lr.Bytes
		rep.Damage = append(rep.Damage, lr.Damage...)
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("spool: verify: %w", err)
	}
	sort.SliceStable(rep.Lanes, func(i, j int) bool {
		a, b := rep.Lanes[i], rep.Lanes[j]
		return a.Topic < b.Topic || (a.Topic == b.Topic && a.Priority > b.Priority)
	})
	return rep, nil
}

// verifyLane reads every segment of a lane. enc reports an encrypted entry.
func verifyLane(dir string, sl *sealer) (lr LaneReport, enc bool, err error) {
	bases, err := segBases(dir)
	if err != nil {
		return lr, false, err
	}
	var segs []*segment
	var segRecs [][]Recovery
	for i, b := range bases {
		seg, recs, e, err := verifySegment(filepath.Join(dir, segName(b)), b, i == len(bases)-1, sl)
		if err != nil {
			return lr, false, err
		}
		enc = enc || e
		if seg == nil {
			lr.Damage = append(lr.Damage, recs...)
			continue
		}
		segs = append(segs, seg)
		segRecs = append(segRecs, recs)
	}
	ckPath := filepath.Join(dir, ckptName)
	if b, err := os.ReadFile(ckPath); err == nil {
		if ck, ok := decodeCheckpoint(b); ok {
			lr.HeadSeq = ck.seq
			// As Open does: segments wholly before the head were released
			// (not yet deleted), and damage in them cost nothing.
			for len(segs) > 1 && segs[0].base < ck.base {
				segs, segRecs = segs[1:], segRecs[1:]
			}
		} else {
			lr.Damage = append(lr.Damage, Recovery{Kind: DamageHead, Segment: ckPath, Bytes: int64(len(b))})
		}
	}
	lr.Damage = append(checkLane(dir, segs, segRecs), lr.Damage...)
	for _, s := range segs {
		lr.Segments++
		lr.Entries += s.sum.entries
		lr.Records += s.sum.records
		lr.Bytes += s.sum.bytes
		if s.sum.entries > 0 {
			if lr.FirstSeq == 0 {
				lr.FirstSeq = s.sum.firstSeq
			}
			lr.LastSeq = s.sum.lastSeq
		}
	}
	return lr, enc, nil
}

// verifySegment reads one segment to its end. A last segment shorter than
// its file header is returned as nil, as Open removes it.
func verifySegment(path string, base uint64, last bool, sl *sealer) (seg *segment, recs []Recovery, enc bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, false, err
	}
	size := fi.Size()
	seg = &segment{base: base, path: path, f: f, size: fileHeaderLen}
	if size < fileHeaderLen {
		if last {
			return nil, []Recovery{{Kind: DamageEmptySegment, Segment: path, Bytes: size}}, false, nil
		}
		seg.sealed = true
		return seg, []Recovery{{Kind: DamageSegment, Segment: path, Bytes: size}}, false, nil
	}
	hdr := make([]byte, fileHeaderLen)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		return nil, nil, false, err
	}
	res, err := scan(seg, size)
	if err != nil {
		return nil, nil, false, fmt.Errorf("scan %s: %w", path, err)
	}
	// A bad file header is worth its own line only when the entries after
	// it are intact; a wholly unreadable segment is one piece of damage.
	if !bytes.Equal(hdr, segHeader(base)) && (res.sum.entries > 0 || res.tail == nil) {
		recs = append(recs, Recovery{Kind: DamageFileHeader, Segment: path, Bytes: fileHeaderLen})
	}
	seg.sum, seg.size, seg.bad = res.sum, res.end, res.bad
	seg.sealed = res.sealed || !last
	recs = append(recs, res.damage...)
	if res.tail != nil {
		t := *res.tail
		t.Truncated = false // Verify cuts nothing
		recs = append(recs, t)
	}
	if res.sealed {
		// The seal settles the records lost inside: exact when the damage
		// is one run.
		var runs []int
		for i, r := range recs {
			if r.Kind == DamageEntries {
				runs = append(runs, i)
			}
		}
		lost := res.seal.records - res.sum.records
		switch {
		case len(runs) == 1 && lost >= recs[runs[0]].Entries:
			recs[runs[0]].Records, recs[runs[0]].RecordsExact = lost, true
		case len(runs) == 0 && (res.seal.entries != res.sum.entries || lost != 0 ||
			(res.sum.entries > 0 && res.seal.lastSeq != res.sum.lastSeq)):
			recs = append(recs, Recovery{Kind: DamageSummary, Segment: path, Offset: res.end, Bytes: sealLen})
		}
	}
	enc, bad := decryptAll(seg, sl)
	recs = append(recs, bad...)
	return seg, recs, enc, nil
}

// decryptAll walks a scanned segment's intact entries: enc reports whether
// any is encrypted and, with a sealer, bad lists those that do not decrypt.
func decryptAll(seg *segment, sl *sealer) (enc bool, bad []Recovery) {
	var r segReader
	for off := int64(fileHeaderLen); off < seg.size; {
		if b, ok := seg.badAt(off); ok {
			off = b.end
			continue
		}
		h, body, ok, err := r.readEntryAt(seg, off, seg.size)
		if err != nil || !ok {
			return enc, bad
		}
		if h.flags&flagEncrypted != 0 {
			enc = true
			if sl == nil {
				return enc, bad
			}
			var hb [headerLen]byte
			h.put(hb[:])
			var ad [28]byte
			if _, err := sl.open(body, aad(ad[:0], hb[:])); err != nil {
				bad = append(bad, Recovery{Kind: DamageEntries, Segment: seg.path, Offset: off, Bytes: h.size(),
					Entries: 1, FirstSeq: h.seq, LastSeq: h.seq, Records: int64(h.records), RecordsExact: true})
			}
		}
		off += h.size()
	}
	return enc, bad
}
