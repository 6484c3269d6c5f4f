package ipvs

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
)

// LinuxOS is the real OS: IPVS over generic netlink (moby/ipvs), links,
// addresses and conntrack over netlink, ipset and iptables through their
// restore commands (one process per change set, as kube-proxy does).
type LinuxOS struct {
	h *ipvs.Handle
	// readers serve VirtualServers and RealServers: a moby/ipvs Handle is
	// not safe for concurrent use, and the background reconcile reads the
	// table while the sync goroutine writes it (on h) and reads a changed
	// Service's real servers; two handles, so neither waits for the other.
	readers chan *ipvs.Handle
	// dumpers serve RealServers the same way, over plain sockets
	// (dests_linux.go).
	dumpers chan *dumper
	batch   *batcher
	// links caches interfaces by name: a lookup per address change would
	// double the netlink round trips when binding thousands of Service IPs.
	linksMu sync.Mutex
	links   map[string]netlink.Link
	// ipsetH writes small ipset changes over netlink (NETLINK_NETFILTER),
	// opened on first use.
	ipsetMu sync.Mutex
	ipsetH  *netlink.Handle
	// Trace, when set, sees every command run (for tests and debugging).
	Trace func(cmd string, stdin []byte, err error)
}

var _ OS = (*LinuxOS)(nil)

// NewLinuxOS opens the IPVS netlink socket in the current network namespace.
func NewLinuxOS() (*LinuxOS, error) {
	h, err := ipvs.New("")
	if err != nil {
		return nil, fmt.Errorf("open IPVS netlink (is the ip_vs module loaded?): %w", err)
	}
	b, err := newBatcher()
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("open IPVS netlink: %w", err)
	}
	l := &LinuxOS{h: h, batch: b, readers: make(chan *ipvs.Handle, 2), dumpers: make(chan *dumper, 2)}
	for range cap(l.dumpers) {
		d, err := newDumper(b.family)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("open IPVS netlink: %w", err)
		}
		l.dumpers <- d
	}
	for range cap(l.readers) {
		rh, err := ipvs.New("")
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("open IPVS netlink: %w", err)
		}
		l.readers <- rh
	}
	return l, nil
}

// read runs f with a read handle to itself.
func (l *LinuxOS) read(f func(h *ipvs.Handle) error) error {
	h := <-l.readers
	defer func() { l.readers <- h }()
	return f(h)
}

// Available says whether this kernel has IPVS, for choosing the proxy mode.
func Available() bool {
	if _, err := os.Stat("/proc/net/ip_vs"); err == nil {
		return true
	}
	h, err := ipvs.New("")
	if err != nil {
		return false
	}
	defer h.Close()
	_, err = h.GetServices()
	return err == nil
}

// Close releases the netlink socket.
func (l *LinuxOS) Close() {
	l.h.Close()
	if l.batch != nil {
		l.batch.close()
	}
	if l.ipsetH != nil {
		l.ipsetH.Close()
	}
	for {
		select {
		case h := <-l.readers:
			h.Close()
		case d := <-l.dumpers:
			d.close()
		default:
			return
		}
	}
}

var protoNum = map[v1.Protocol]uint16{v1.ProtocolTCP: syscall.IPPROTO_TCP, v1.ProtocolUDP: syscall.IPPROTO_UDP, v1.ProtocolSCTP: syscall.IPPROTO_SCTP}

func toIPVS(vs VirtualServer) *ipvs.Service {
	s := &ipvs.Service{Address: net.IP(vs.Addr.AsSlice()), Protocol: protoNum[vs.Protocol], Port: vs.Port,
		SchedName: vs.Scheduler, AddressFamily: syscall.AF_INET, Netmask: 0xffffffff}
	if vs.Addr.Is6() {
		s.AddressFamily, s.Netmask = syscall.AF_INET6, 128
	}
	if vs.Timeout > 0 {
		s.Flags |= 0x1 // IP_VS_SVC_F_PERSISTENT
		s.Timeout = vs.Timeout
	}
	return s
}

func keyIPVS(k VSKey) *ipvs.Service { return toIPVS(VirtualServer{VSKey: k}) }

func (l *LinuxOS) VirtualServers() ([]VirtualServer, error) {
	var ss []*ipvs.Service
	err := l.read(func(h *ipvs.Handle) (err error) { ss, err = h.GetServices(); return err })
	if err != nil {
		return nil, err
	}
	out := make([]VirtualServer, 0, len(ss))
	for _, s := range ss {
		if s.FWMark != 0 {
			continue // not ours: we never use firewall-mark services
		}
		a, ok := netip.AddrFromSlice(s.Address)
		if !ok {
			continue
		}
		var proto v1.Protocol
		for p, n := range protoNum {
			if n == s.Protocol {
				proto = p
			}
		}
		vs := VirtualServer{VSKey: VSKey{Protocol: proto, Addr: a.Unmap(), Port: s.Port}, Scheduler: s.SchedName}
		if s.Flags&0x1 != 0 {
			vs.Timeout = s.Timeout
		}
		out = append(out, vs)
	}
	return out, nil
}

func (l *LinuxOS) AddVirtualServer(vs VirtualServer) error    { return l.h.NewService(toIPVS(vs)) }
func (l *LinuxOS) UpdateVirtualServer(vs VirtualServer) error { return l.h.UpdateService(toIPVS(vs)) }
func (l *LinuxOS) DeleteVirtualServer(k VSKey) error {
	err := l.h.DelService(keyIPVS(k))
	if errors.Is(err, syscall.ESRCH) || errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

func (l *LinuxOS) RealServers(k VSKey) ([]RealServer, error) {
	d := <-l.dumpers
	defer func() { l.dumpers <- d }()
	return d.dests(k)
}

func (l *LinuxOS) AddRealServers(k VSKey, rs []RealServer) error {
	return l.batch.destCmd(ipvsCmdNewDest, k, rs, "add")
}

func (l *LinuxOS) AddVirtualServers(vss []VirtualServer, reals [][]RealServer) error {
	return l.batch.addServices(vss, reals)
}

func (l *LinuxOS) AddRealServer(k VSKey, r RealServer) error {
	return l.batch.destCmd(ipvsCmdNewDest, k, []RealServer{r}, "add")
}
func (l *LinuxOS) UpdateRealServer(k VSKey, r RealServer) error {
	return l.batch.destCmd(ipvsCmdSetDest, k, []RealServer{r}, "update")
}
func (l *LinuxOS) DeleteRealServer(k VSKey, r RealServer) error {
	return l.batch.destCmd(ipvsCmdDelDest, k, []RealServer{r}, "delete")
}

func (l *LinuxOS) EnsureDummy(name string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return err
		}
		if err := netlink.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("create dummy %s (kernel without dummy interfaces?): %w", name, err)
		}
		if link, err = l.link(name, true); err != nil {
			return err
		}
	}
	return netlink.LinkSetUp(link)
}

func (l *LinuxOS) LinkAddrs(name string) ([]netip.Addr, error) {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return nil, err
	}
	as, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(as))
	for _, x := range as {
		if a, ok := netip.AddrFromSlice(x.IP); ok {
			out = append(out, a.Unmap())
		}
	}
	return out, nil
}

func hostAddr(a netip.Addr) *netlink.Addr {
	bits := 32
	if a.Is6() {
		bits = 128
	}
	return &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(bits, bits)}}
}

// link is name's interface, from the cache unless fresh is set.
func (l *LinuxOS) link(name string, fresh bool) (netlink.Link, error) {
	l.linksMu.Lock()
	defer l.linksMu.Unlock()
	if link, ok := l.links[name]; ok && !fresh {
		return link, nil
	}
	link, err := netlink.LinkByName(name)
	if err != nil {
		delete(l.links, name)
		return nil, err
	}
	if l.links == nil {
		l.links = map[string]netlink.Link{}
	}
	l.links[name] = link
	return link, nil
}

// withLink runs f on name's cached interface, and once more on a fresh
// lookup if the cached one is gone (the interface was recreated).
func (l *LinuxOS) withLink(name string, f func(netlink.Link) error) error {
	link, err := l.link(name, false)
	if err != nil {
		return err
	}
	err = f(link)
	if errors.Is(err, syscall.ENODEV) {
		if link, err = l.link(name, true); err != nil {
			return err
		}
		err = f(link)
	}
	return err
}

func (l *LinuxOS) AddLinkAddr(name string, a netip.Addr) error {
	err := l.withLink(name, func(link netlink.Link) error { return netlink.AddrAdd(link, hostAddr(a)) })
	if err != nil && !errors.Is(err, syscall.EEXIST) {
		return err
	}
	return nil
}

func (l *LinuxOS) AddLinkAddrs(name string, as []netip.Addr) error {
	return l.withLink(name, func(link netlink.Link) error { return l.batch.addAddrs(link.Attrs().Index, as) })
}

func (l *LinuxOS) DelLinkAddr(name string, a netip.Addr) error {
	if err := l.withLink(name, func(link netlink.Link) error { return netlink.AddrDel(link, hostAddr(a)) }); err != nil {
		if errors.Is(err, syscall.EADDRNOTAVAIL) {
			return fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		return err
	}
	return nil
}

func (l *LinuxOS) run(stdin []byte, name string, args ...string) ([]byte, error) {
	out, err := run(stdin, name, args...)
	if l.Trace != nil {
		l.Trace(name+" "+strings.Join(args, " "), stdin, err)
	}
	return out, err
}

func run(stdin []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

func (l *LinuxOS) EnsureIPSets(sets []IPSet) error {
	var b bytes.Buffer
	for _, s := range sets {
		fmt.Fprintf(&b, "create %s %s", s.Name, s.Type)
		switch {
		case s.Type == "bitmap:port":
			b.WriteString(" range 0-65535")
		case s.Family == v1.IPv6Protocol:
			b.WriteString(" family inet6")
		default:
			b.WriteString(" family inet")
		}
		b.WriteString(" -exist\n")
	}
	if b.Len() == 0 {
		return nil
	}
	_, err := l.run(b.Bytes(), "ipset", "restore")
	return err
}

// IPSetEntries reads every set with one `ipset save` and keeps the named.
func (l *LinuxOS) IPSetEntries(names ...string) (map[string][]string, error) {
	out, err := l.run(nil, "ipset", "save")
	if err != nil {
		return nil, err
	}
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	res := make(map[string][]string, len(names))
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == "create" && want[f[1]]:
			if res[f[1]] == nil {
				res[f[1]] = []string{}
			}
		case len(f) >= 3 && f[0] == "add" && want[f[1]]:
			res[f[1]] = append(res[f[1]], f[2])
		}
	}
	for _, n := range names {
		if res[n] == nil {
			return nil, fmt.Errorf("ipset %s: %w", n, ErrNotFound)
		}
	}
	return res, nil
}

// ipsetNetlinkMax is the largest change written over netlink, one request
// per entry; a larger one goes to one ipset restore. Starting a process
// costs about 10 ms in user-mode-linux, most of a one-Service change (a
// new endpoint's loop-back entry); a request per entry of a first sync's
// tens of thousands costs more than the process.
const ipsetNetlinkMax = 64

func (l *LinuxOS) UpdateIPSets(add, del map[string][]string) error {
	n := 0
	for _, es := range add {
		n += len(es)
	}
	for _, es := range del {
		n += len(es)
	}
	if n == 0 {
		return nil
	}
	if n <= ipsetNetlinkMax {
		if err := l.updateIPSetsNetlink(add, del); err == nil {
			return nil
		}
		// ipset restore says which entry is wrong and how; the netlink
		// requests done so far are redone (-exist).
	}
	return l.updateIPSetsRestore(add, del)
}

// updateIPSetsNetlink is ipset restore's "add/del SET ENTRY -exist" over
// netlink: no NLM_F_EXCL is what -exist sets.
func (l *LinuxOS) updateIPSetsNetlink(add, del map[string][]string) error {
	l.ipsetMu.Lock()
	defer l.ipsetMu.Unlock()
	if l.ipsetH == nil {
		h, err := netlink.NewHandle(unix.NETLINK_NETFILTER)
		if err != nil {
			return err
		}
		l.ipsetH = h
	}
	type req struct {
		do   func(string, *netlink.IPSetEntry) error
		set  string
		text string
		ent  *netlink.IPSetEntry
	}
	// Every entry parsed before any is written: one this cannot send
	// leaves the whole change to ipset restore.
	var reqs []req
	for _, op := range []struct {
		m  map[string][]string
		do func(string, *netlink.IPSetEntry) error
	}{{del, l.ipsetH.IpsetDel}, {add, l.ipsetH.IpsetAdd}} {
		for _, n := range sortedKeys(op.m) {
			for _, e := range op.m[n] {
				ent, err := parseSetEntry(e)
				if err != nil {
					return err
				}
				ent.Replace = true
				reqs = append(reqs, req{op.do, n, e, ent})
			}
		}
	}
	for _, r := range reqs {
		if err := r.do(r.set, r.ent); err != nil {
			return fmt.Errorf("ipset %s %s: %w", r.set, r.text, err)
		}
	}
	return nil
}

// errSetEntry is an entry parseSetEntry does not know.
var errSetEntry = errors.New("unsupported ipset entry")

// parseSetEntry reads the hash entries this plane writes (contribution):
// "IP,PROTO:PORT" (hash:ip,port), and that followed by ",IP"
// (hash:ip,port,ip) or ",CIDR" (hash:ip,port,net). Not bitmap:port's
// "PORT": netlink.IPSetEntry always sends a protocol with a port, which
// bitmap:port refuses.
func parseSetEntry(e string) (*netlink.IPSetEntry, error) {
	parts := strings.Split(e, ",")
	if len(parts) < 2 || len(parts) > 3 {
		return nil, fmt.Errorf("%w %q", errSetEntry, e)
	}
	ip, err := netip.ParseAddr(parts[0])
	if err != nil {
		return nil, fmt.Errorf("%w %q: %w", errSetEntry, e, err)
	}
	protoName, portStr, ok := strings.Cut(parts[1], ":")
	proto, known := map[string]uint8{"tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP, "sctp": unix.IPPROTO_SCTP}[protoName]
	if !ok || !known {
		return nil, fmt.Errorf("%w %q: protocol:port", errSetEntry, e)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %w", errSetEntry, e, err)
	}
	p := uint16(port)
	ent := &netlink.IPSetEntry{IP: net.IP(ip.AsSlice()), Protocol: &proto, Port: &p}
	if len(parts) == 3 {
		if strings.Contains(parts[2], "/") {
			pf, err := netip.ParsePrefix(parts[2])
			if err != nil {
				return nil, fmt.Errorf("%w %q: %w", errSetEntry, e, err)
			}
			ent.IP2, ent.CIDR2 = net.IP(pf.Masked().Addr().AsSlice()), uint8(pf.Bits())
		} else {
			ip2, err := netip.ParseAddr(parts[2])
			if err != nil {
				return nil, fmt.Errorf("%w %q: %w", errSetEntry, e, err)
			}
			ent.IP2 = net.IP(ip2.AsSlice())
		}
	}
	return ent, nil
}

func (l *LinuxOS) updateIPSetsRestore(add, del map[string][]string) error {
	var b bytes.Buffer
	for _, n := range sortedKeys(del) {
		for _, e := range del[n] {
			fmt.Fprintf(&b, "del %s %s -exist\n", n, e)
		}
	}
	for _, n := range sortedKeys(add) {
		for _, e := range add[n] {
			fmt.Fprintf(&b, "add %s %s -exist\n", n, e)
		}
	}
	if b.Len() == 0 {
		return nil
	}
	_, err := l.run(b.Bytes(), "ipset", "restore")
	return err
}

func sortedKeys(m map[string][]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (l *LinuxOS) EnsureIPTables(f v1.IPFamily, jumps []Jump, rules string) error {
	save, restore := "iptables-save", "iptables-restore"
	if f == v1.IPv6Protocol {
		save, restore = "ip6tables-save", "ip6tables-restore"
	}
	// Two processes whatever the number of jumps: one save shows which
	// exist, and the restore that fills our chains inserts the missing
	// ones in the same commit. A check (-C) and an insert (-I) per jump
	// were eleven processes at a first sync, each costing more than its
	// work (tens of milliseconds in user-mode-linux).
	out, err := l.run(nil, save)
	if err != nil {
		return err
	}
	_, err = l.run([]byte(withJumps(rules, missingJumps(out, jumps))), restore, "--noflush", "--wait")
	return err
}

// jumpComment marks the jumps this plane inserts into built-in chains.
const jumpComment = "nodesuite proxy"

// missingJumps are the jumps an iptables-save output lacks.
func missingJumps(save []byte, jumps []Jump) []Jump {
	have := map[Jump]bool{}
	table := ""
	for _, line := range strings.Split(string(save), "\n") {
		if t, ok := strings.CutPrefix(line, "*"); ok {
			table = strings.TrimSpace(t)
			continue
		}
		f := strings.Fields(line)
		// -A CHAIN ... -m comment --comment "nodesuite proxy" -j TARGET
		if len(f) < 4 || f[0] != "-A" || f[len(f)-2] != "-j" || !strings.Contains(line, `--comment "`+jumpComment+`"`) {
			continue
		}
		have[Jump{Table: table, Chain: f[1], Target: f[len(f)-1]}] = true
	}
	var out []Jump
	for _, j := range jumps {
		if !have[j] {
			out = append(out, j)
		}
	}
	return out
}

// withJumps adds an insert of each jump to rules (an iptables-restore
// text), at the end of its table's section, after our chains are declared.
func withJumps(rules string, jumps []Jump) string {
	if len(jumps) == 0 {
		return rules
	}
	byTable := map[string][]Jump{}
	for _, j := range jumps {
		byTable[j.Table] = append(byTable[j.Table], j)
	}
	var b strings.Builder
	table := ""
	for _, line := range strings.SplitAfter(rules, "\n") {
		if t, ok := strings.CutPrefix(line, "*"); ok {
			table = strings.TrimSpace(t)
		}
		if strings.TrimSpace(line) == "COMMIT" {
			for _, j := range byTable[table] {
				fmt.Fprintf(&b, "-I %s -m comment --comment %q -j %s\n", j.Chain, jumpComment, j.Target)
			}
			delete(byTable, table)
		}
		b.WriteString(line)
	}
	// A table rules does not mention gets a section of its own.
	for _, t := range sortedJumpTables(byTable) {
		fmt.Fprintf(&b, "*%s\n", t)
		for _, j := range byTable[t] {
			fmt.Fprintf(&b, "-I %s -m comment --comment %q -j %s\n", j.Chain, jumpComment, j.Target)
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

func sortedJumpTables(m map[string][]Jump) []string {
	out := make([]string, 0, len(m))
	for t := range m {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

func (l *LinuxOS) Sysctl(path string) (string, error) {
	b, err := os.ReadFile(filepath.Join("/proc/sys", path))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func (l *LinuxOS) SetSysctl(path, value string) error {
	return os.WriteFile(filepath.Join("/proc/sys", path), []byte(value), 0o644)
}

func (l *LinuxOS) SetTimeouts(t Timeouts) error {
	return l.h.SetConfig(&ipvs.Config{TimeoutTCP: t.TCP, TimeoutTCPFin: t.TCPFin, TimeoutUDP: t.UDP})
}

func (l *LinuxOS) DeleteConntrack(f v1.IPFamily, c ConntrackFilter) error {
	fam := netlink.InetFamily(syscall.AF_INET)
	if f == v1.IPv6Protocol {
		fam = syscall.AF_INET6
	}
	filt := &netlink.ConntrackFilter{}
	if p, ok := protoNum[c.Protocol]; ok {
		if err := filt.AddProtocol(uint8(p)); err != nil {
			return err
		}
	}
	if c.OrigDst.IsValid() {
		if err := filt.AddIP(netlink.ConntrackOrigDstIP, net.IP(c.OrigDst.AsSlice())); err != nil {
			return err
		}
	}
	if c.OrigDstPort != 0 {
		if err := filt.AddPort(netlink.ConntrackOrigDstPort, c.OrigDstPort); err != nil {
			return err
		}
	}
	if c.ReplySrc.IsValid() {
		if err := filt.AddIP(netlink.ConntrackReplySrcIP, net.IP(c.ReplySrc.AsSlice())); err != nil {
			return err
		}
	}
	_, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, fam, filt)
	return err
}

func (l *LinuxOS) RemoveIPTables(f v1.IPFamily, jumps []Jump, chains map[string][]string) error {
	ipt := "iptables"
	if f == v1.IPv6Protocol {
		ipt = "ip6tables"
	}
	var errs []error
	for _, j := range jumps {
		spec := []string{"--wait", "-t", j.Table, "-D", j.Chain, "-m", "comment", "--comment", jumpComment, "-j", j.Target}
		// Delete every copy; the loop ends when -D finds none.
		for i := 0; i < 10; i++ {
			if _, err := l.run(nil, ipt, spec...); err != nil {
				break
			}
		}
	}
	for table, cs := range chains {
		for _, c := range cs {
			_, _ = l.run(nil, ipt, "--wait", "-t", table, "-F", c)
		}
		for _, c := range cs {
			if _, err := l.run(nil, ipt, "--wait", "-t", table, "-X", c); err != nil && !strings.Contains(err.Error(), "No chain") {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (l *LinuxOS) DestroyIPSet(name string) error {
	if _, err := l.run(nil, "ipset", "list", "-n", name); err != nil {
		return nil // not there
	}
	_, err := l.run(nil, "ipset", "destroy", name)
	return err
}

func (l *LinuxOS) DeleteLink(name string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return err
	}
	l.linksMu.Lock()
	delete(l.links, name)
	l.linksMu.Unlock()
	return netlink.LinkDel(link)
}

// HostAddresses lists the addresses of every interface but kube-ipvs0 (its
// addresses are Service IPs, not node IPs).
// The syncer asks at every sync, and kube-ipvs0 holds one address per
// Service: each link's addresses are asked for with a dump the kernel
// filters by interface (NETLINK_GET_STRICT_CHK, Linux 4.20+), so the
// Service IPs are never read. netlink.AddrList filters in user space after
// a dump of every address of the host.
func HostAddresses() ([]netip.Addr, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	s, err := nl.GetNetlinkSocketAt(netns.None(), netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	strict := unix.SetsockoptInt(int(s.GetFd()), unix.SOL_NETLINK, unix.NETLINK_GET_STRICT_CHK, 1) == nil
	var out []netip.Addr
	for _, l := range links {
		if l.Attrs().Name == DummyName {
			continue
		}
		as, err := linkAddrs(s, l.Attrs().Index, strict)
		if err != nil {
			return nil, fmt.Errorf("addresses of %s: %w", l.Attrs().Name, err)
		}
		out = append(out, as...)
	}
	return out, nil
}

func linkAddrs(s *nl.NetlinkSocket, index int, strict bool) ([]netip.Addr, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETADDR, unix.NLM_F_DUMP)
	msg := nl.NewIfAddrmsg(unix.AF_UNSPEC)
	if strict {
		msg.Index = uint32(index)
	}
	req.AddData(msg)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: s}}
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWADDR)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, m := range msgs {
		h := nl.DeserializeIfAddrmsg(m)
		if int(h.Index) != index {
			continue // an old kernel that ignored the filter
		}
		attrs, err := nl.ParseRouteAttr(m[h.Len():])
		if err != nil {
			return nil, err
		}
		// As netlink.AddrList: IFA_LOCAL is the address on point-to-point
		// links, where IFA_ADDRESS is the peer's.
		var local, address []byte
		for _, a := range attrs {
			switch a.Attr.Type {
			case unix.IFA_LOCAL:
				local = a.Value
			case unix.IFA_ADDRESS:
				address = a.Value
			}
		}
		if local == nil {
			local = address
		}
		if ip, ok := netip.AddrFromSlice(local); ok {
			out = append(out, ip.Unmap())
		}
	}
	return out, nil
}
