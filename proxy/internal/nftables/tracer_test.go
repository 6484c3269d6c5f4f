package nftables

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"
)

// tracer runs a packet through the rules held by a knftables.Fake, the way
// the kernel would for the rule shapes this package writes (it is not a
// general nft interpreter: an unknown expression fails the test). It follows
// every branch of a random choice, so a trace returns all possible outcomes.
type tracer struct {
	t        *testing.T
	fake     *knftables.Fake
	localIPs []netip.Addr // addresses "fib ... type local" matches
	steps    int
}

type packet struct {
	src, dst netip.Addr
	proto    string
	dport    int
	local    bool // generated on the node (output path), else arriving
}

func (p packet) String() string {
	from := "from"
	if p.local {
		from = "from host"
	}
	return fmt.Sprintf("%s %s:%d %s %s", p.proto, p.dst, p.dport, from, p.src)
}

// outcome of a packet's first trip through the node.
type outcome struct {
	Verdict    string // accept, drop, reject
	DNAT       string // endpoint the packet was sent to, "" if not NATed
	Masquerade bool
}

func (o outcome) String() string {
	s := o.Verdict
	if o.DNAT != "" {
		s += " dnat " + o.DNAT
	}
	if o.Masquerade {
		s += " masq"
	}
	return s
}

type pstate struct {
	packet
	prob    float64 // probability of this branch
	mark    uint32
	dnatted bool
	masq    bool
}

type result struct {
	st      pstate
	verdict string // "", accept, drop, reject; "" means fell off the chain
}

func (tr *tracer) trace(p packet) []outcome {
	o, _ := tr.traceProb(p)
	return o
}

// traceProb also returns the probability of each outcome (random choices
// of the rules weighed as the kernel would draw them).
func (tr *tracer) traceProb(p packet) ([]outcome, map[string]float64) {
	st := pstate{packet: p, prob: 1}
	prob := map[string]float64{}
	var path []string
	if p.local {
		path = []string{"filter-output-pre-dnat", "nat-output", "filter-output", "nat-postrouting"}
	} else {
		path = []string{"filter-prerouting-pre-dnat", "nat-prerouting", "*route*", "nat-postrouting"}
	}
	states := []pstate{st}
	var done []outcome
	for _, c := range path {
		var next []pstate
		for _, s := range states {
			chain := c
			if c == "*route*" {
				chain = "filter-forward"
				if tr.isLocal(s.dst) {
					chain = "filter-input"
				}
			}
			for _, r := range tr.run(chain, s, 0) {
				if r.verdict == "drop" || r.verdict == "reject" {
					o := outcome{Verdict: r.verdict}
					done = append(done, o)
					prob[o.String()] += r.st.prob
					continue
				}
				next = append(next, r.st)
			}
		}
		states = next
	}
	for _, s := range states {
		o := outcome{Verdict: "accept", Masquerade: s.masq}
		if s.dnatted {
			o.DNAT = netip.AddrPortFrom(s.dst, uint16(s.dport)).String()
		}
		done = append(done, o)
		prob[o.String()] += s.prob
	}
	return uniqueOutcomes(done), prob
}

func uniqueOutcomes(in []outcome) []outcome {
	seen := map[string]bool{}
	var out []outcome
	for _, o := range in {
		if !seen[o.String()] {
			seen[o.String()] = true
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

func (tr *tracer) isLocal(a netip.Addr) bool {
	for _, l := range tr.localIPs {
		if l == a {
			return true
		}
	}
	return false
}

// run evaluates a chain; results with verdict "" fell off its end.
func (tr *tracer) run(chain string, st pstate, depth int) []result {
	if depth > 20 {
		tr.t.Fatalf("chain recursion too deep at %s", chain)
	}
	ch := tr.fake.Table.Chains[chain]
	if ch == nil {
		tr.t.Fatalf("trace: no chain %q", chain)
	}
	states := []pstate{st}
	var out []result
	for _, rule := range ch.Rules {
		var next []pstate
		for _, s := range states {
			for _, r := range tr.rule(rule.Rule, s, depth) {
				switch r.verdict {
				case "":
					next = append(next, r.st)
				case "return":
					out = append(out, result{st: r.st})
				default:
					out = append(out, r)
				}
			}
		}
		states = next
	}
	for _, s := range states {
		out = append(out, result{st: s})
	}
	return out
}

// rule evaluates one rule: matches first, then statements.
func (tr *tracer) rule(rule string, st pstate, depth int) []result {
	tr.steps++
	tok := strings.Fields(rule)
	i := 0
	fail := func(msg string) []result {
		tr.t.Fatalf("trace: %s at token %d of rule %q", msg, i, rule)
		return nil
	}
	for i < len(tok) {
		switch {
		case tok[i] == "ct" && tok[i+1] == "state":
			if tok[i+2] != "new" {
				return []result{{st: st}} // only new connections are traced
			}
			i += 3
		case tok[i] == "ct" && tok[i+1] == "status" && tok[i+2] == "dnat":
			if !st.dnatted {
				return []result{{st: st}}
			}
			i += 3
		case tok[i] == "fib":
			addr := st.src
			if tok[i+1] == "daddr" {
				addr = st.dst
			}
			if !tr.isLocal(addr) {
				return []result{{st: st}}
			}
			i += 4
		case tok[i] == "mark" && tok[i+1] == "and":
			m := parseMark(tr.t, tok[i+2])
			if st.mark&m == 0 {
				return []result{{st: st}}
			}
			i += 5 // mark and M != 0
		case tok[i] == "mark" && tok[i+1] == "set":
			m := parseMark(tr.t, tok[i+4])
			if tok[i+3] == "or" {
				st.mark |= m
			} else {
				st.mark ^= m
			}
			i += 5
		case tok[i] == "numgen":
			// numgen random mod K == 0: either way; follow both.
			if tok[i+1] != "random" || tok[i+4] != "==" {
				return fail("unknown numgen")
			}
			k, _ := strconv.Atoi(tok[i+3])
			miss, hit := st, st
			miss.prob *= float64(k-1) / float64(k)
			hit.prob /= float64(k)
			rest := strings.Join(tok[i+6:], " ")
			return append([]result{{st: miss}}, tr.rule(rest, hit, depth)...)
		case tok[i] == "meta" && tok[i+1] == "l4proto" && tok[i+2] != ".":
			if tok[i+2] != st.proto {
				return []result{{st: st}}
			}
			i += 3
		case tok[i] == "ip" || tok[i] == "ip6" || tok[i] == "meta" || tok[i] == "th":
			if tok[i+1] == "addr" { // "dnat ip addr . port to" is handled with dnat
				return fail("unexpected addr")
			}
			var key []string
			for {
				key = append(key, tr.selector(tok[i], tok[i+1], st))
				i += 2
				if i < len(tok) && tok[i] == "." {
					i++
					continue
				}
				break
			}
			switch {
			case tok[i] == "vmap":
				name := strings.TrimPrefix(tok[i+1], "@")
				m := tr.fake.Table.Maps[name]
				if m == nil {
					return fail("no map " + name)
				}
				el := m.FindElement(key...)
				if el == nil {
					return []result{{st: st}}
				}
				return tr.verdict(strings.Fields(strings.Join(el.Value, " ")), st, depth)
			case strings.HasPrefix(tok[i], "@"):
				name := strings.TrimPrefix(tok[i], "@")
				if strings.HasPrefix(name, affinityPrefix) {
					// Affinity sets are filled by the kernel: empty here.
					return []result{{st: st}}
				}
				s := tr.fake.Table.Sets[name]
				if s == nil {
					return fail("no set " + name)
				}
				if s.FindElement(key...) == nil {
					return []result{{st: st}}
				}
				i++
			default:
				neg := false
				if tok[i] == "!=" {
					neg = true
					i++
				}
				var vals []string
				if tok[i] == "{" {
					i++
					for tok[i] != "}" {
						if tok[i] != "," {
							vals = append(vals, tok[i])
						}
						i++
					}
				} else {
					vals = []string{tok[i]}
				}
				i++
				if matchAny(tr.t, key[0], vals) == neg {
					return []result{{st: st}}
				}
			}
		default:
			return tr.verdict(tok[i:], st, depth)
		}
	}
	return []result{{st: st}}
}

func (tr *tracer) selector(a, b string, st pstate) string {
	switch a + " " + b {
	case "ip saddr", "ip6 saddr":
		return st.src.String()
	case "ip daddr", "ip6 daddr":
		return st.dst.String()
	case "meta l4proto":
		return st.proto
	case "th dport":
		return strconv.Itoa(st.dport)
	}
	tr.t.Fatalf("trace: unknown selector %q", a+" "+b)
	return ""
}

// verdict runs the statement part of a rule.
func (tr *tracer) verdict(tok []string, st pstate, depth int) []result {
	switch tok[0] {
	case "accept", "drop":
		return []result{{st: st, verdict: tok[0]}}
	case "reject":
		return []result{{st: st, verdict: "reject"}}
	case "masquerade":
		st.masq = true
		return []result{{st: st, verdict: "accept"}}
	case "jump", "goto":
		out := tr.run(tok[1], st, depth+1)
		if tok[0] == "goto" {
			// Falling off a goto'd chain ends the chain that did the goto.
			for i := range out {
				if out[i].verdict == "" {
					out[i].verdict = "return"
				}
			}
		}
		return out
	case "update":
		// "update @set { ip saddr }": records affinity; no effect on a first packet.
		if len(tok) == 6 {
			return []result{{st: st}}
		}
		return tr.verdict(tok[6:], st, depth)
	case "dnat":
		if tok[1] != "to" {
			break
		}
		ap := netip.MustParseAddrPort(tok[2])
		st.dst, st.dport, st.dnatted = ap.Addr(), int(ap.Port()), true
		return []result{{st: st, verdict: "accept"}}
	}
	tr.t.Fatalf("trace: unknown statement %q", strings.Join(tok, " "))
	return nil
}

func matchAny(t *testing.T, v string, vals []string) bool {
	for _, x := range vals {
		if strings.Contains(x, "/") {
			p := netip.MustParsePrefix(x)
			if a, err := netip.ParseAddr(v); err == nil && p.Contains(a) {
				return true
			}
			continue
		}
		if x == v {
			return true
		}
	}
	return false
}

func parseMark(t *testing.T, s string) uint32 {
	v, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		t.Fatalf("trace: bad mark %q", s)
	}
	return uint32(v)
}

// outcomes is a compact way to write expectations: "accept dnat 10.0.0.1:80 masq".
func outcomes(ss ...string) []outcome {
	var out []outcome
	for _, s := range ss {
		f := strings.Fields(s)
		o := outcome{Verdict: f[0]}
		for i := 1; i < len(f); i++ {
			switch f[i] {
			case "dnat":
				o.DNAT = f[i+1]
				i++
			case "masq":
				o.Masquerade = true
			default:
				panic(fmt.Sprintf("bad outcome %q", s))
			}
		}
		out = append(out, o)
	}
	return uniqueOutcomes(out)
}
