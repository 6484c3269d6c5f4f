package ipvs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// IPVS generic netlink numbers (include/uapi/linux/ip_vs.h).
const (
	ipvsCmdNewService   = 1
	ipvsCmdNewDest      = 5
	ipvsSvcAttrSched    = 6
	ipvsSvcAttrFlags    = 7
	ipvsSvcAttrTimeout  = 8
	ipvsSvcAttrNetmask  = 9
	ipvsCmdAttrService  = 1
	ipvsCmdAttrDest     = 2
	ipvsSvcAttrAF       = 1
	ipvsSvcAttrProtocol = 2
	ipvsSvcAttrAddr     = 3
	ipvsSvcAttrPort     = 4
	ipvsDestAttrAddr    = 1
	ipvsDestAttrPort    = 2
	ipvsDestAttrFwd     = 3
	ipvsDestAttrWeight  = 4
	ipvsDestAttrUThresh = 5
	ipvsDestAttrLThresh = 6
	ipvsDestAttrAF      = 11
	// batchMax bounds one sendmsg (and the acks it brings back).
	batchMax = 128
)

// batcher sends several IPVS commands in one sendmsg: the kernel's netlink
// input runs every message of a buffer in turn and acks each, so adding a
// Service's real servers costs one round trip instead of one per real
// server. moby/ipvs (used for everything else) sends one message per call;
// on a slow kernel (UML) the round trips are most of a first sync.
//
// The same goes for kube-ipvs0's addresses (RTM_NEWADDR over rtnetlink):
// netlink.AddrAdd opens a socket per call and sends one message.
type batcher struct {
	mu      sync.Mutex
	fd      int // NETLINK_GENERIC, for IPVS
	routeFD int // NETLINK_ROUTE, for addresses
	family  uint16
	buf     []byte
	out     []byte
	seq     uint32 // the last request's sequence number
}

func netlinkSocket(proto int) (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return -1, err
	}
	// Acks without the request echoed back: only the error code is read.
	// Best effort (Linux >= 4.3).
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	// A lost ack must not hang a sync.
	tv := unix.Timeval{Sec: 10}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func newBatcher() (*batcher, error) {
	fam, err := netlink.GenlFamilyGet("IPVS")
	if err != nil {
		return nil, fmt.Errorf("IPVS generic netlink family: %w", err)
	}
	fd, err := netlinkSocket(unix.NETLINK_GENERIC)
	if err != nil {
		return nil, err
	}
	rfd, err := netlinkSocket(unix.NETLINK_ROUTE)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &batcher{fd: fd, routeFD: rfd, family: fam.ID, buf: make([]byte, 1<<16)}, nil
}

func (b *batcher) close() { unix.Close(b.fd); unix.Close(b.routeFD) }

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

func afOf(isV6 bool) uint16 {
	if isV6 {
		return unix.AF_INET6
	}
	return unix.AF_INET
}

// msgBuf appends netlink messages to one buffer, attribute by attribute,
// without allocating: vishvananda/netlink's request types allocate every
// attribute and serialize into new slices, about fifteen allocations per
// real server, millions (and their page faults, costly in user-mode-linux)
// in a first sync of 10,000 Services. The layout is theirs: nlmsghdr, a
// fixed header (genlmsghdr, ifaddrmsg), then 4-byte aligned attributes;
// nested ones without NLA_F_NESTED, as moby/ipvs and nl send them.
type msgBuf struct{ b []byte }

func (m *msgBuf) u16(v uint16) { m.b = binary.NativeEndian.AppendUint16(m.b, v) }
func (m *msgBuf) u32(v uint32) { m.b = binary.NativeEndian.AppendUint32(m.b, v) }

// pad aligns to 4 bytes (every message starts aligned in the buffer).
func (m *msgBuf) pad() {
	for len(m.b)%4 != 0 {
		m.b = append(m.b, 0)
	}
}

// begin appends a netlink header; end fills in its length.
func (m *msgBuf) begin(typ, flags uint16, seq uint32) int {
	start := len(m.b)
	m.u32(0)
	m.u16(typ)
	m.u16(flags)
	m.u32(seq)
	m.u32(0) // port id: the kernel's
	return start
}

func (m *msgBuf) end(start int) {
	binary.NativeEndian.PutUint32(m.b[start:], uint32(len(m.b)-start))
}

func (m *msgBuf) genl(cmd uint8) { m.b = append(m.b, cmd, 1, 0, 0) }

func (m *msgBuf) attrHdr(typ uint16, n int) {
	m.u16(uint16(4 + n))
	m.u16(typ)
}

func (m *msgBuf) attrU16(typ, v uint16) {
	m.attrHdr(typ, 2)
	m.u16(v)
	m.pad()
}

func (m *msgBuf) attrBE16(typ, v uint16) {
	m.attrHdr(typ, 2)
	m.b = binary.BigEndian.AppendUint16(m.b, v)
	m.pad()
}

func (m *msgBuf) attrU32(typ uint16, v uint32) {
	m.attrHdr(typ, 4)
	m.u32(v)
}

func (m *msgBuf) attrBytes(typ uint16, v []byte) {
	m.attrHdr(typ, len(v))
	m.b = append(m.b, v...)
	m.pad()
}

// attrAddr is an address as 4 or 16 bytes (netip.Addr.AsSlice allocates).
func (m *msgBuf) attrAddr(typ uint16, a netip.Addr) {
	if a.Is4() {
		b := a.As4()
		m.attrBytes(typ, b[:])
		return
	}
	b := a.As16()
	m.attrBytes(typ, b[:])
}

// nest opens a nested attribute; endNest fills in its length.
func (m *msgBuf) nest(typ uint16) int {
	start := len(m.b)
	m.attrHdr(typ, 0)
	return start
}

func (m *msgBuf) endNest(start int) {
	binary.NativeEndian.PutUint16(m.b[start:], uint16(len(m.b)-start))
}

// service opens IPVS_CMD_ATTR_SERVICE with k's identity; the caller may
// add more service attributes before endNest.
func (m *msgBuf) service(k VSKey) int {
	n := m.nest(ipvsCmdAttrService)
	m.attrU16(ipvsSvcAttrAF, afOf(k.Addr.Is6()))
	m.attrU16(ipvsSvcAttrProtocol, protoNum[k.Protocol])
	m.attrAddr(ipvsSvcAttrAddr, k.Addr)
	m.attrBE16(ipvsSvcAttrPort, k.Port)
	return n
}

// dest appends IPVS_CMD_ATTR_DEST for r (NAT forwarding, no thresholds).
func (m *msgBuf) dest(r RealServer) {
	n := m.nest(ipvsCmdAttrDest)
	m.attrAddr(ipvsDestAttrAddr, r.Addr)
	m.attrBE16(ipvsDestAttrPort, r.Port)
	m.attrU32(ipvsDestAttrFwd, 0) // IP_VS_CONN_F_MASQ: NAT
	m.attrU32(ipvsDestAttrWeight, uint32(r.Weight))
	m.attrU32(ipvsDestAttrUThresh, 0)
	m.attrU32(ipvsDestAttrLThresh, 0)
	m.attrU16(ipvsDestAttrAF, afOf(r.Addr.Is6()))
	m.endNest(n)
}

// attrString is a NUL-terminated string attribute.
func (m *msgBuf) attrString(typ uint16, v string) {
	m.attrHdr(typ, len(v)+1)
	m.b = append(m.b, v...)
	m.b = append(m.b, 0)
	m.pad()
}

// newService appends a whole IPVS_CMD_NEW_SERVICE payload for vs.
func (m *msgBuf) newService(vs VirtualServer) {
	m.genl(ipvsCmdNewService)
	n := m.service(vs.VSKey)
	m.attrString(ipvsSvcAttrSched, vs.Scheduler)
	var flags uint32
	if vs.Timeout > 0 {
		flags = 0x1 // IP_VS_SVC_F_PERSISTENT
	}
	m.attrHdr(ipvsSvcAttrFlags, 8) // struct ip_vs_flags: flags, then the mask of those set
	m.u32(flags)
	m.u32(0xffffffff)
	m.attrU32(ipvsSvcAttrTimeout, vs.Timeout)
	mask := uint32(0xffffffff)
	if vs.Addr.Is6() {
		mask = 128
	}
	m.attrU32(ipvsSvcAttrNetmask, mask)
	m.endNest(n)
}

// addServices creates virtual servers and adds their real servers, all in
// as few sendmsg calls as batchMax allows: the kernel runs a buffer's
// messages in order, so each service exists before its destinations come.
func (b *batcher) addServices(vss []VirtualServer, reals [][]RealServer) error {
	// first[j] is the request that creates vss[j]; its real servers follow.
	first := make([]int, len(vss)+1)
	for j := range vss {
		first[j+1] = first[j] + 1 + len(reals[j])
	}
	// Requests come in order: enc walks them with a cursor.
	j, r := 0, -1
	enc := func(m *msgBuf, i int) {
		for i >= first[j+1] {
			j++
		}
		if r = i - first[j] - 1; r < 0 {
			m.newService(vss[j])
			return
		}
		m.genl(ipvsCmdNewDest)
		m.endNest(m.service(vss[j].VSKey))
		m.dest(reals[j][r])
	}
	return b.send(b.fd, b.family, 0, first[len(vss)], enc, func(i int, err error) error {
		// Described only on failure: a string per request was a good part
		// of a first sync's allocations.
		j := sort.SearchInts(first, i+1) - 1
		if r := i - first[j] - 1; r >= 0 {
			return fmt.Errorf("add real server %s to %s: %w", reals[j][r].AddrPort(), vss[j].VSKey, err)
		}
		return fmt.Errorf("add virtual server %s: %w", vss[j].VSKey, err)
	})
}

// addAddrs binds host addresses (/32, /128) to the interface with index
// link; one that is already there is not an error.
func (b *batcher) addAddrs(link int, as []netip.Addr) error {
	enc := func(m *msgBuf, i int) {
		a := as[i]
		fam, bits := byte(unix.AF_INET), byte(32)
		if a.Is6() {
			fam, bits = unix.AF_INET6, 128
		}
		// struct ifaddrmsg: family, prefix length, flags, scope, index.
		m.b = append(m.b, fam, bits, 0, 0)
		m.u32(uint32(link))
		m.attrAddr(unix.IFA_LOCAL, a)
		m.attrAddr(unix.IFA_ADDRESS, a)
	}
	return b.send(b.routeFD, unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL, len(as), enc, func(i int, err error) error {
		if errors.Is(err, syscall.EEXIST) {
			return nil
		}
		return fmt.Errorf("bind %s: %w", as[i], err)
	})
}

// send runs n requests of netlink message type typ, batchMax to a
// sendmsg: enc appends request i's payload after the header send writes
// (flags | NLM_F_REQUEST). wrap turns request i's error into the caller's
// (nil drops it). Only a batch's last request asks for an ack: the kernel
// reports a failed request whether asked or not, and runs a buffer's
// requests in order, so the last ack comes after every error of its
// batch. An ack per request would be a recvmsg each (one ack is one
// datagram): 110,000 system calls for 10,000 Services x 10 endpoints, most
// of a first sync's time in user-mode-linux.
func (b *batcher) send(fd int, typ, flags uint16, n int, enc func(m *msgBuf, i int), wrap func(i int, err error) error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var errs []error
	for start := 0; start < n; start += batchMax {
		end := min(start+batchMax, n)
		// One send buffer, reused: growing a fresh one per batch was a
		// good part of a first sync's allocations (and, in
		// user-mode-linux, of its page faults).
		m := msgBuf{b: b.out[:0]}
		firstSeq := b.seq + 1
		for i := start; i < end; i++ {
			f := flags | unix.NLM_F_REQUEST
			if i == end-1 {
				f |= unix.NLM_F_ACK
			}
			b.seq++
			h := m.begin(typ, f, b.seq)
			enc(&m, i)
			m.end(h)
		}
		b.out = m.b
		last := b.seq
		if err := unix.Sendto(fd, m.b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return errors.Join(append(errs, fmt.Errorf("netlink send of %d requests: %w", end-start, err))...)
		}
		for done := false; !done; {
			got, _, err := unix.Recvfrom(fd, b.buf, 0)
			if err != nil {
				return errors.Join(append(errs, fmt.Errorf("netlink acks (%d requests): %w", end-start, err))...)
			}
			msgs, err := syscall.ParseNetlinkMessage(b.buf[:got])
			if err != nil {
				return errors.Join(append(errs, fmt.Errorf("netlink acks: %w", err))...)
			}
			for _, msg := range msgs {
				// Unsigned: a sequence number from before this batch
				// (a late ack of a failed one) is far out of range.
				k := msg.Header.Seq - firstSeq
				if k >= uint32(end-start) || msg.Header.Type != unix.NLMSG_ERROR || len(msg.Data) < 4 {
					continue
				}
				if msg.Header.Seq == last {
					done = true
				}
				if code := int32(binary.NativeEndian.Uint32(msg.Data[:4])); code != 0 {
					if err := wrap(start+int(k), syscall.Errno(-code)); err != nil {
						errs = append(errs, err)
					}
				}
			}
		}
	}
	return errors.Join(errs...)
}
