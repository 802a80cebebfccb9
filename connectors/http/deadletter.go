package http

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
)

// deadLetters is the dead-letter file of a sink: one JSON line per batch
// the far side refused for its content, rotated at max bytes into NAME.1,
// NAME.2 … with files kept in all.
type deadLetters struct {
	mu    sync.Mutex
	path  string
	max   int64
	files int
	env   *connectors.Env // nil in `ferry deadletter`

	dropped prometheus.Counter
}

// DeadLetter is one line of the dead-letter file. Records is the batch
// in JSON, to read; Batch is the same batch in the record schema's Avro
// (base64), which `ferry deadletter replay` sends again in the sink's
// format.
type DeadLetter struct {
	Time    time.Time       `json:"time"`
	URL     string          `json:"url"`
	Status  int             `json:"status"`
	Answer  string          `json:"answer"`
	Records json.RawMessage `json:"records"`
	Batch   string          `json:"batch,omitempty"`
}

func (d *deadLetters) add(url string, b *bus.Batch, status int, answer string) error {
	line, err := json.Marshal(DeadLetter{Time: time.Now().UTC(), URL: url, Status: status, Answer: answer,
		Records: jsonArray(b), Batch: base64.StdEncoding.EncodeToString(b.AppendAvro(nil))})
	if err != nil {
		return err
	}
	return d.append(append(line, '\n'))
}

// append writes lines at the end of the current file, rotating it first
// when they would take it past max.
func (d *deadLetters) append(lines []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(d.path), 0o750); err != nil {
		return err
	}
	if fi, err := os.Stat(d.path); err == nil && fi.Size() > 0 && fi.Size()+int64(len(lines)) > d.max {
		if err := d.rotate(); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(d.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	_, err = f.Write(lines)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// rotate shifts NAME.k to NAME.k+1 and NAME to NAME.1; the file beyond
// the kept ones is deleted, and the batches it held are counted and
// logged: the bound is what keeps a far side that refuses everything
// from filling the disk.
func (d *deadLetters) rotate() error {
	if d.files <= 1 {
		d.drop(d.path)
		return os.Remove(d.path)
	}
	d.drop(rotated(d.path, d.files-1))
	for k := d.files - 2; k >= 1; k-- {
		if err := os.Rename(rotated(d.path, k), rotated(d.path, k+1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return os.Rename(d.path, rotated(d.path, 1))
}

func (d *deadLetters) drop(name string) {
	n, err := countLines(name)
	if err != nil || n == 0 {
		return
	}
	_ = os.Remove(name)
	if d.env != nil {
		if d.dropped == nil {
			d.dropped = connectors.Collector(d.env.Metrics.Reg, prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "ferry_http_dead_letters_dropped_total",
				Help: "Dead-lettered batches deleted when the dead-letter files reached dead_letter_files × dead_letter_max_size.",
			}, []string{"module"})).WithLabelValues(d.env.Name)
		}
		d.dropped.Add(float64(n))
		d.env.Logger.Warn("dead-letter files full; the oldest was deleted", "file", name, "batches", n)
	}
}

func rotated(path string, k int) string { return fmt.Sprintf("%s.%d", path, k) }

func countLines(name string) (int, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return 0, err
	}
	return bytes.Count(b, []byte{'\n'}), nil
}

// deadLetterFiles lists the sink's dead-letter files, oldest first: a
// replay that was cut short (NAME….replaying), then NAME.N … NAME.1, NAME.
func (d *deadLetters) list() []string {
	var out []string
	for _, base := range append([]string{}, d.names()...) {
		for _, n := range []string{base + ".replaying", base} {
			if _, err := os.Stat(n); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

func (d *deadLetters) names() []string {
	var names []string
	for k := d.files + 8; k >= 1; k-- { // a few beyond, in case dead_letter_files was lowered
		names = append(names, rotated(d.path, k))
	}
	return append(names, d.path)
}

func jsonArray(b *bus.Batch) []byte {
	out := []byte{'['}
	for i := range b.Records {
		if i > 0 {
			out = append(out, ',')
		}
		out = b.Records[i].AppendJSON(out)
	}
	return append(out, ']')
}

// DeadLetterEntry is a dead letter as `ferry deadletter list` shows it.
type DeadLetterEntry struct {
	File string
	DeadLetter
	Records int
}

// DeadLetters prepares the sink for `ferry deadletter`, outside a running
// pipeline: the files are under dataDir as `ferry run --data-dir` has them.
func (h *HTTP) DeadLetters(ctx context.Context, module, dataDir string) error {
	env, err := connectors.NewEnv(connectors.EnvConfig{Name: module, Type: "http", DataDir: dataDir})
	if err != nil {
		return err
	}
	h.Listen = "" // the command replays; it takes nothing in
	return h.Start(ctx, env)
}

// ListDeadLetters returns every dead-lettered batch, oldest first.
func (h *HTTP) ListDeadLetters() ([]DeadLetterEntry, error) {
	var out []DeadLetterEntry
	for _, name := range h.dead.list() {
		err := eachLine(name, func(line []byte) {
			var dl DeadLetter
			e := DeadLetterEntry{File: name}
			if json.Unmarshal(line, &dl) == nil {
				e.DeadLetter = dl
				var recs []json.RawMessage
				_ = json.Unmarshal(dl.Records, &recs)
				e.Records = len(recs)
			}
			out = append(out, e)
		})
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// ReplayResult counts what a replay did.
type ReplayResult struct {
	Sent, Refused, Unreadable int
}

// ReplayDeadLetters sends every dead-lettered batch again, oldest first,
// in the sink's current format, URL and headers. A batch the far side takes
// leaves the dead-letter files; one still refused (or that cannot be
// sent) is written back to the current file. Safe while ferry runs: each
// file is renamed aside (NAME….replaying) before it is read, so the
// running sink goes on writing a new one. A failure to reach the far side
// stops the replay; what was not tried yet is kept.
func (h *HTTP) ReplayDeadLetters(ctx context.Context, progress io.Writer) (ReplayResult, error) {
	var res ReplayResult
	var keep bytes.Buffer // written back at the end, so nothing is tried twice
	var works []string
	var stop error
	for _, name := range h.dead.list() {
		work := name
		if filepath.Ext(name) != ".replaying" {
			work = name + ".replaying"
			if err := os.Rename(name, work); err != nil {
				return res, err
			}
		}
		works = append(works, work)
		err := eachLine(work, func(line []byte) {
			kept := true
			defer func() {
				if kept {
					keep.Write(line)
					keep.WriteByte('\n')
				}
			}()
			if stop != nil {
				return
			}
			var dl DeadLetter
			var b bus.Batch
			if err := json.Unmarshal(line, &dl); err != nil || dl.Batch == "" {
				res.Unreadable++ // not a line of this ferry, or written before batches were kept
				return
			}
			raw, err := base64.StdEncoding.DecodeString(dl.Batch)
			if err == nil {
				err = bus.DecodeBatch(raw, &b)
			}
			if err != nil {
				res.Unreadable++
				return
			}
			var a answer
			if req, err := h.request(ctx, &b); err != nil {
				a.err = err
			} else {
				a = h.post(req)
			}
			switch {
			case a.err != nil:
				stop = fmt.Errorf("http %s: %w", h.URL, a.err)
			case classify(a.status) == classOK:
				res.Sent++
				kept = false
				fmt.Fprintf(progress, "sent %d records (refused with %d at %s)\n", len(b.Records), dl.Status, dl.Time.Format(time.RFC3339))
			case classify(a.status) == classPayload:
				res.Refused++
				fmt.Fprintf(progress, "refused again: %s: %s\n", a.statusText, a.body)
			default:
				stop = fmt.Errorf("http %s: %s: %s", h.URL, a.statusText, a.body)
			}
		})
		if err != nil {
			return res, err
		}
	}
	if keep.Len() > 0 {
		if err := h.dead.append(keep.Bytes()); err != nil {
			return res, fmt.Errorf("keeping what was not sent: %w (it is still in %v)", err, works)
		}
	}
	for _, w := range works {
		if err := os.Remove(w); err != nil {
			return res, err
		}
	}
	return res, stop
}

func eachLine(name string, fn func([]byte)) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<30)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) > 0 {
			fn(bytes.Clone(sc.Bytes()))
		}
	}
	return sc.Err()
}
