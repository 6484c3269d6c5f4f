package nftables

import (
	"context"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"

	"sigs.k8s.io/knftables"
)

// The data plane keeps a model of the objects it owns in its table: chains
// (with their rules), elements of the fixed sets/maps, and per-endpoint
// affinity sets. Each Sync computes the desired model for what changed and
// writes only the difference to the kernel, in one transaction.

// hashPrefix marks the comment on a chain's first rule that carries the hash
// of the whole chain, so that a restarted proxy can tell from one
// `nft list table` whether a chain it finds is already what it wants
// (knftables' ListRules returns comments but not rule text).
const hashPrefix = "nodesuite:"

type chainDef struct {
	name  string
	base  *knftables.Chain // type/hook/priority for base chains, nil otherwise
	rules []string
	hash  string
}

func newChain(name string, rules ...string) *chainDef {
	return &chainDef{name: name, rules: rules}
}

// add appends a rule; "@ name" is joined to "@name" as nft spells set references.
func (c *chainDef) add(rule ...interface{}) {
	c.rules = append(c.rules, strings.ReplaceAll(knftables.Concat(rule...), "@ ", "@"))
}

func (c *chainDef) computeHash() {
	if len(c.rules) == 0 {
		c.hash = ""
		return
	}
	h := fnv.New64a()
	if c.base != nil {
		fmt.Fprintf(h, "%s %s %s\n", *c.base.Type, *c.base.Hook, *c.base.Priority)
	}
	for _, r := range c.rules {
		h.Write([]byte(r))
		h.Write([]byte{'\n'})
	}
	c.hash = fmt.Sprintf("%016x", h.Sum64())
}

type elemDef struct {
	container string
	isMap     bool
	key       []string
	value     []string
}

func (e *elemDef) id() string { return e.container + "\x00" + strings.Join(e.key, " . ") }

func (e *elemDef) sameValue(o *elemDef) bool {
	return strings.Join(e.value, " ") == strings.Join(o.value, " ")
}

func (e *elemDef) object() *knftables.Element {
	el := &knftables.Element{Key: e.key}
	if e.isMap {
		el.Map = e.container
		el.Value = e.value
	} else {
		el.Set = e.container
	}
	return el
}

// fragment is the part of the model one owner (a Service port, or the
// global scaffolding) contributes.
type fragment struct {
	chains map[string]*chainDef
	elems  map[string]*elemDef
	sets   map[string]*knftables.Set // affinity sets (elements are the kernel's)
}

func newFragment() *fragment {
	return &fragment{chains: map[string]*chainDef{}, elems: map[string]*elemDef{}, sets: map[string]*knftables.Set{}}
}

func (f *fragment) chain(c *chainDef) *chainDef {
	f.chains[c.name] = c
	return c
}

func (f *fragment) elem(container string, isMap bool, key []string, value ...string) {
	e := &elemDef{container: container, isMap: isMap, key: key, value: value}
	f.elems[e.id()] = e
}

// view is a whole table's content as far as this data plane cares: either
// what it wants, or what it believes the kernel has.
type view struct {
	tableExists bool
	containers  map[string]bool // fixed sets and maps present
	chains      map[string]*chainDef
	chainHash   map[string]string // kernel side: hash found on the chain
	elems       map[string]*elemDef
	refs        map[string]int // desired side: owners of each element
	sets        map[string]*knftables.Set
}

func newView() *view {
	return &view{
		containers: map[string]bool{},
		chains:     map[string]*chainDef{},
		chainHash:  map[string]string{},
		elems:      map[string]*elemDef{},
		refs:       map[string]int{},
		sets:       map[string]*knftables.Set{},
	}
}

// touched collects the names a sync must compare.
type touched struct {
	chains, elems, sets map[string]bool
}

func newTouched() *touched {
	return &touched{chains: map[string]bool{}, elems: map[string]bool{}, sets: map[string]bool{}}
}

func (t *touched) fragment(f *fragment) {
	if f == nil {
		return
	}
	for n := range f.chains {
		t.chains[n] = true
	}
	for id := range f.elems {
		t.elems[id] = true
	}
	for n := range f.sets {
		t.sets[n] = true
	}
}

func (v *view) addFragment(f *fragment) {
	if f == nil {
		return
	}
	for n, c := range f.chains {
		v.chains[n] = c
	}
	for id, e := range f.elems {
		v.refs[id]++
		v.elems[id] = e
	}
	for n, s := range f.sets {
		v.sets[n] = s
	}
}

func (v *view) removeFragment(f *fragment) {
	if f == nil {
		return
	}
	for n := range f.chains {
		delete(v.chains, n)
	}
	for id := range f.elems {
		v.refs[id]--
		if v.refs[id] <= 0 {
			delete(v.refs, id)
			delete(v.elems, id)
		}
	}
	for n := range f.sets {
		delete(v.sets, n)
	}
}

// readKernel lists what the table holds: one `nft list table` for the
// chains and their hashes, plus one listing per fixed set/map.
func readKernel(ctx context.Context, nft knftables.Interface, fixed []fixedContainer) (*view, error) {
	k := newView()
	chains, err := nft.List(ctx, "chain")
	if knftables.IsNotFound(err) {
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing chains: %w", err)
	}
	k.tableExists = true
	for _, c := range chains {
		k.chainHash[c] = ""
	}
	rules, err := nft.ListRules(ctx, "")
	if err != nil && !knftables.IsNotFound(err) {
		return nil, fmt.Errorf("listing rules: %w", err)
	}
	seen := map[string]bool{}
	for _, r := range rules {
		if seen[r.Chain] {
			continue
		}
		seen[r.Chain] = true
		// A chain whose first rule has no hash comment is not ours as
		// written: its hash stays a non-empty mismatch and it is rewritten.
		h := "unknown"
		if r.Comment != nil && strings.HasPrefix(*r.Comment, hashPrefix) {
			h = strings.TrimPrefix(*r.Comment, hashPrefix)
		}
		k.chainHash[r.Chain] = h
	}
	sets, err := nft.List(ctx, "set")
	if err != nil && !knftables.IsNotFound(err) {
		return nil, fmt.Errorf("listing sets: %w", err)
	}
	maps, err := nft.List(ctx, "map")
	if err != nil && !knftables.IsNotFound(err) {
		return nil, fmt.Errorf("listing maps: %w", err)
	}
	present := map[string]bool{}
	for _, s := range sets {
		present["set/"+s] = true
		if strings.HasPrefix(s, affinityPrefix) {
			k.sets[s] = &knftables.Set{Name: s}
		}
	}
	for _, m := range maps {
		present["map/"+m] = true
	}
	for _, fc := range fixed {
		kind := "set"
		if fc.isMap {
			kind = "map"
		}
		if !present[kind+"/"+fc.name] {
			continue
		}
		k.containers[fc.name] = true
		elems, err := nft.ListElements(ctx, kind, fc.name)
		if err != nil {
			return nil, fmt.Errorf("listing %s %s: %w", kind, fc.name, err)
		}
		for _, el := range elems {
			e := &elemDef{container: fc.name, isMap: fc.isMap, key: el.Key, value: el.Value}
			k.elems[e.id()] = e
		}
	}
	return k, nil
}

type fixedContainer struct {
	name  string
	isMap bool
	typ   string
}

// diff writes into tx what turns the kernel side k into the desired side d
// for the touched names, and updates k to match (the caller keeps k only if
// the transaction succeeds). The order keeps every reference valid inside
// the transaction: containers and chains exist before rules and elements
// refer to them; elements go before the chains they point at are deleted.
func diff(tx *knftables.Transaction, k, d *view, t *touched, fixed []fixedContainer, comment string) {
	if !k.tableExists {
		tx.Add(&knftables.Table{Comment: knftables.PtrTo(comment)})
		k.tableExists = true
	}
	for _, fc := range fixed {
		if k.containers[fc.name] {
			continue
		}
		if fc.isMap {
			tx.Add(&knftables.Map{Name: fc.name, Type: fc.typ})
		} else {
			tx.Add(&knftables.Set{Name: fc.name, Type: fc.typ})
		}
		k.containers[fc.name] = true
	}
	setNames := sortedKeys(t.sets)
	for _, n := range setNames {
		if s, ok := d.sets[n]; ok {
			if _, have := k.sets[n]; !have {
				tx.Add(s)
				k.sets[n] = s
			}
		}
	}
	chainNames := sortedKeys(t.chains)
	var rewrite []*chainDef
	for _, n := range chainNames {
		c, ok := d.chains[n]
		if !ok {
			continue
		}
		h, have := k.chainHash[n]
		switch {
		case !have:
			if c.base != nil {
				tx.Add(c.base)
			} else {
				tx.Add(&knftables.Chain{Name: n})
			}
			rewrite = append(rewrite, c)
		case h != c.hash:
			tx.Flush(&knftables.Chain{Name: n})
			if c.base != nil {
				// Its type, hook or priority may be what differs, which
				// nft cannot change in place: recreate it (it only holds
				// jumps, so nothing refers to it).
				tx.Delete(&knftables.Chain{Name: n})
				tx.Add(c.base)
			}
			rewrite = append(rewrite, c)
		}
		k.chainHash[n] = c.hash
	}
	for _, c := range rewrite {
		for i, r := range c.rules {
			rule := &knftables.Rule{Chain: c.name, Rule: r}
			if i == 0 {
				rule.Comment = knftables.PtrTo(hashPrefix + c.hash)
			}
			tx.Add(rule)
		}
	}
	elemIDs := sortedKeys(t.elems)
	for _, id := range elemIDs {
		ke, have := k.elems[id]
		de, want := d.elems[id]
		switch {
		case have && !want:
			tx.Delete(ke.object())
			delete(k.elems, id)
		case !have && want:
			tx.Add(de.object())
			k.elems[id] = de
		case have && want && !ke.sameValue(de):
			tx.Delete(ke.object())
			tx.Add(de.object())
			k.elems[id] = de
		}
	}
	var stale []string
	for _, n := range chainNames {
		if _, ok := d.chains[n]; ok {
			continue
		}
		if _, have := k.chainHash[n]; have {
			tx.Flush(&knftables.Chain{Name: n})
			stale = append(stale, n)
		}
	}
	for _, n := range stale {
		tx.Delete(&knftables.Chain{Name: n})
		delete(k.chainHash, n)
	}
	for _, n := range setNames {
		if _, ok := d.sets[n]; ok {
			continue
		}
		if _, have := k.sets[n]; have {
			tx.Delete(&knftables.Set{Name: n})
			delete(k.sets, n)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
