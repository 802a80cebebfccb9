package modbus

import (
	"slices"
	"sort"
	"time"
)

// request is one read of a poll cycle: a contiguous range of one area and
// the tags it serves.
type request struct {
	area  Area
	start uint16
	count int
	tags  []int // indexes into the device's tags
}

func (r *request) end() int { return int(r.start) + r.count }

// rng is an inclusive address range.
type rng struct {
	First int `json:"first"`
	Last  int `json:"last"`
}

func (r rng) overlaps(first, endExcl int) bool { return r.First < endExcl && first <= r.Last }

// limits are what a device allows in one area: the protocol's maximum,
// lowered by its profile and by what ferry learned from its exceptions.
type limits struct {
	max   int   // addresses per request
	gap   int   // unused addresses a request may read through
	avoid []rng // ranges never read together with anything else
	alone bool  // one request per tag
}

// planArea coalesces the tags of one area into as few requests as lim
// allows. Tags are visited in address order and each request grows while
// the next tag fits: within max addresses of the request's start, at most
// gap unused addresses after its end, and touching no avoided range. For
// ranges on a line this greedy choice is optimal: a request that stops
// earlier can never save a later one.
func planArea(area Area, tags []tagSpec, idx []int, lim limits) []request {
	sort.SliceStable(idx, func(i, j int) bool {
		a, b := &tags[idx[i]], &tags[idx[j]]
		if a.addr != b.addr {
			return a.addr < b.addr
		}
		return a.size > b.size
	})
	var out []request
	var cur *request
	curAlone := false
	for _, i := range idx {
		t := &tags[i]
		start, end := int(t.addr), t.end()
		alone := lim.alone || avoided(lim.avoid, start, end)
		if cur != nil {
			switch {
			case start >= int(cur.start) && end <= cur.end() && (!alone && !curAlone || start == int(cur.start) && end == cur.end()):
				// Inside the current request (a bit of a register already
				// read, or the same registers under another name).
				cur.tags = append(cur.tags, i)
				continue
			case !alone && !curAlone && end-int(cur.start) <= lim.max && start-cur.end() <= lim.gap &&
				!avoided(lim.avoid, cur.end(), start):
				cur.count = max(cur.count, end-int(cur.start))
				cur.tags = append(cur.tags, i)
				continue
			}
		}
		out = append(out, request{area: area, start: t.addr, count: t.size, tags: []int{i}})
		cur = &out[len(out)-1]
		curAlone = alone
	}
	return out
}

func avoided(avoid []rng, start, end int) bool {
	if start >= end {
		return false
	}
	for _, r := range avoid {
		if r.overlaps(start, end) {
			return true
		}
	}
	return false
}

// pollGroup is the tags of a device that share a poll interval, and their
// read plan.
type pollGroup struct {
	interval time.Duration
	plan     []request
	tags     int
	due      time.Time // next poll; owned by the poll loop
	polled   bool      // read in the cycle that just ran
}

// interval is the tag's poll interval in its device.
func (d *deviceSpec) interval(t *tagSpec) time.Duration {
	if t.interval > 0 {
		return t.interval
	}
	return d.set.poll
}

// groups splits the device's tags by poll interval, shortest first, and
// plans each group's reads on its own: tags of different intervals are
// never read together, so a slow group costs nothing between its polls.
func (d *deviceSpec) groups(l *learnedDevice) []pollGroup {
	var ivs []time.Duration
	for i := range d.tags {
		if iv := d.interval(&d.tags[i]); !slices.Contains(ivs, iv) {
			ivs = append(ivs, iv)
		}
	}
	slices.Sort(ivs)
	out := make([]pollGroup, 0, len(ivs))
	for _, iv := range ivs {
		n := 0
		plan := d.plan(l, func(t *tagSpec) bool {
			if d.interval(t) == iv {
				n++
				return true
			}
			return false
		})
		out = append(out, pollGroup{interval: iv, plan: plan, tags: n})
	}
	return out
}

// plan computes the read plan of a device's tags that include accepts
// (all when nil) from its settings and learned limits. It runs once at
// start and again only when ferry learns a limit.
func (d *deviceSpec) plan(l *learnedDevice, include func(*tagSpec) bool) []request {
	var byArea [4][]int
	for i := range d.tags {
		if d.tags[i].size > 0 && (include == nil || include(&d.tags[i])) {
			byArea[d.tags[i].area] = append(byArea[d.tags[i].area], i)
		}
	}
	var out []request
	for a := Coil; a <= Holding; a++ {
		if len(byArea[a]) == 0 {
			continue
		}
		lim := limits{max: maxCount(a, d.set.profile), gap: d.set.maxGap, alone: d.set.profile.OneRequestPerTag}
		if a.Bits() {
			lim.gap = d.set.maxBitGap
		}
		if la := l.area(a); la != nil {
			if la.MaxCount > 0 && la.MaxCount < lim.max {
				lim.max = la.MaxCount
			}
			lim.avoid = la.Avoid
		}
		out = append(out, planArea(a, d.tags, byArea[a], lim)...)
	}
	return out
}

// PlanRequest is one read of a device's poll cycle, for `ferry plan`.
type PlanRequest struct {
	Area     string
	Function byte
	Start    int // 0-based
	Count    int
	Tags     []string
}

// DevicePlan is the read plan of a device's poll group: a device whose
// tags have several poll intervals has one DevicePlan per interval, in
// order from the shortest.
type DevicePlan struct {
	Device       string
	Endpoint     string
	Unit         int
	PollInterval string
	Tags         int
	Requests     []PlanRequest
	// Learned describes limits learned from the device's exceptions, when
	// a learned-limits file was given.
	Learned []string
}

// Plan returns every device's read plan as the connector computes it at
// start. learnedFile, when not empty, is the learned.json of this connector
// instance (data_dir/<name>/learned.json); its limits are applied as a
// running connector would.
func (m *Modbus) Plan(learnedFile string) ([]DevicePlan, error) {
	specs, p := m.Config.build()
	if err := p.Err(); err != nil {
		return nil, err
	}
	var store *learnedStore
	if learnedFile != "" {
		var err error
		if store, err = loadLearned(learnedFile); err != nil {
			return nil, err
		}
	}
	out := make([]DevicePlan, 0, len(specs))
	for _, d := range specs {
		l := store.get(d)
		for _, g := range d.groups(l) {
			dp := DevicePlan{Device: d.name, Endpoint: d.endpoint.String(), Unit: int(d.unit), PollInterval: g.interval.String(), Tags: g.tags}
			for _, r := range g.plan {
				pr := PlanRequest{Area: r.area.String(), Function: r.area.ReadFunction(), Start: int(r.start), Count: r.count}
				for _, i := range r.tags {
					pr.Tags = append(pr.Tags, d.tags[i].name)
				}
				dp.Requests = append(dp.Requests, pr)
			}
			out = append(out, dp)
		}
		out[len(out)-1].Learned = l.describe()
	}
	return out, nil
}
