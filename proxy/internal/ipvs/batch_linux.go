package ipvs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
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

func serviceAttr(k VSKey) *nl.RtAttr {
	a := nl.NewRtAttr(ipvsCmdAttrService, nil)
	a.AddRtAttr(ipvsSvcAttrAF, nl.Uint16Attr(afOf(k.Addr.Is6())))
	a.AddRtAttr(ipvsSvcAttrProtocol, nl.Uint16Attr(protoNum[k.Protocol]))
	a.AddRtAttr(ipvsSvcAttrAddr, k.Addr.AsSlice())
	a.AddRtAttr(ipvsSvcAttrPort, be16(k.Port))
	return a
}

func destAttr(r RealServer) *nl.RtAttr {
	a := nl.NewRtAttr(ipvsCmdAttrDest, nil)
	a.AddRtAttr(ipvsDestAttrAddr, r.Addr.AsSlice())
	a.AddRtAttr(ipvsDestAttrPort, be16(r.Port))
	a.AddRtAttr(ipvsDestAttrFwd, nl.Uint32Attr(0)) // IP_VS_CONN_F_MASQ: NAT
	a.AddRtAttr(ipvsDestAttrWeight, nl.Uint32Attr(uint32(r.Weight)))
	a.AddRtAttr(ipvsDestAttrUThresh, nl.Uint32Attr(0))
	a.AddRtAttr(ipvsDestAttrLThresh, nl.Uint32Attr(0))
	a.AddRtAttr(ipvsDestAttrAF, nl.Uint16Attr(afOf(r.Addr.Is6())))
	return a
}

// addServices creates virtual servers and adds their real servers, all in
// as few sendmsg calls as batchMax allows: the kernel runs a buffer's
// messages in order, so each service exists before its destinations come.
func (b *batcher) addServices(vss []VirtualServer, reals [][]RealServer) error {
	var reqs []*nl.NetlinkRequest
	var what []string
	var errs []error
	// Requests are built a batch at a time: all of a first sync's at once
	// would be most of the proxy's peak memory.
	flush := func() {
		w := what
		errs = append(errs, b.run(b.fd, reqs, func(i int, err error) error { return fmt.Errorf("%s: %w", w[i], err) }))
		reqs, what = reqs[:0], nil
	}
	for i, vs := range vss {
		if len(reqs) >= batchMax {
			flush()
		}
		req := nl.NewNetlinkRequest(int(b.family), unix.NLM_F_ACK)
		req.AddData(&nl.Genlmsg{Command: ipvsCmdNewService, Version: 1})
		a := serviceAttr(vs.VSKey)
		a.AddRtAttr(ipvsSvcAttrSched, nl.ZeroTerminated(vs.Scheduler))
		var flags uint32
		if vs.Timeout > 0 {
			flags = 0x1 // IP_VS_SVC_F_PERSISTENT
		}
		a.AddRtAttr(ipvsSvcAttrFlags, binary.NativeEndian.AppendUint32(binary.NativeEndian.AppendUint32(nil, flags), 0xffffffff))
		a.AddRtAttr(ipvsSvcAttrTimeout, nl.Uint32Attr(vs.Timeout))
		mask := uint32(0xffffffff)
		if vs.Addr.Is6() {
			mask = 128
		}
		a.AddRtAttr(ipvsSvcAttrNetmask, nl.Uint32Attr(mask))
		req.AddData(a)
		reqs = append(reqs, req)
		what = append(what, "add virtual server "+vs.VSKey.String())
		for _, r := range reals[i] {
			req := nl.NewNetlinkRequest(int(b.family), unix.NLM_F_ACK)
			req.AddData(&nl.Genlmsg{Command: ipvsCmdNewDest, Version: 1})
			req.AddData(serviceAttr(vs.VSKey))
			req.AddData(destAttr(r))
			reqs = append(reqs, req)
			what = append(what, fmt.Sprintf("add real server %s to %s", r.AddrPort(), vs.VSKey))
		}
	}
	flush()
	return errors.Join(errs...)
}

// addAddrs binds host addresses (/32, /128) to the interface with index
// link; one that is already there is not an error.
func (b *batcher) addAddrs(link int, as []netip.Addr) error {
	reqs := make([]*nl.NetlinkRequest, len(as))
	for i, a := range as {
		req := nl.NewNetlinkRequest(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
		fam, bits := unix.AF_INET, 32
		if a.Is6() {
			fam, bits = unix.AF_INET6, 128
		}
		msg := nl.NewIfAddrmsg(fam)
		msg.Index = uint32(link)
		msg.Prefixlen = uint8(bits)
		req.AddData(msg)
		req.AddData(nl.NewRtAttr(unix.IFA_LOCAL, a.AsSlice()))
		req.AddData(nl.NewRtAttr(unix.IFA_ADDRESS, a.AsSlice()))
		reqs[i] = req
	}
	return b.run(b.routeFD, reqs, func(i int, err error) error {
		if errors.Is(err, syscall.EEXIST) {
			return nil
		}
		return fmt.Errorf("bind %s: %w", as[i], err)
	})
}

// run sends reqs batchMax at a time; wrap turns request i's error into the
// caller's (nil drops it). Only a batch's last request asks for an ack:
// the kernel reports a failed request whether asked or not, and runs a
// buffer's requests in order, so the last ack comes after every error of
// its batch. An ack per request would be a recvmsg each (one ack is one
// datagram): 110,000 system calls for 10,000 Services x 10 endpoints, most
// of a first sync's time in user-mode-linux.
func (b *batcher) run(fd int, reqs []*nl.NetlinkRequest, wrap func(i int, err error) error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var errs []error
	for start := 0; start < len(reqs); start += batchMax {
		end := min(start+batchMax, len(reqs))
		// One send buffer, reused: growing a fresh one per batch was a
		// good part of a first sync's allocations (and, in
		// user-mode-linux, of its page faults).
		out := b.out[:0]
		bySeq := make(map[uint32]int, end-start)
		for i := start; i < end; i++ {
			if i < end-1 {
				reqs[i].Flags &^= unix.NLM_F_ACK
			} else {
				reqs[i].Flags |= unix.NLM_F_ACK
			}
			out = append(out, reqs[i].Serialize()...)
			bySeq[reqs[i].Seq] = i
		}
		b.out = out
		last := reqs[end-1].Seq
		if err := unix.Sendto(fd, out, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return errors.Join(append(errs, fmt.Errorf("netlink send of %d requests: %w", end-start, err))...)
		}
		for done := false; !done; {
			n, _, err := unix.Recvfrom(fd, b.buf, 0)
			if err != nil {
				return errors.Join(append(errs, fmt.Errorf("netlink acks (%d requests): %w", end-start, err))...)
			}
			msgs, err := syscall.ParseNetlinkMessage(b.buf[:n])
			if err != nil {
				return errors.Join(append(errs, fmt.Errorf("netlink acks: %w", err))...)
			}
			for _, m := range msgs {
				i, ok := bySeq[m.Header.Seq]
				if !ok || m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4 {
					continue
				}
				delete(bySeq, m.Header.Seq)
				if m.Header.Seq == last {
					done = true
				}
				if code := int32(binary.NativeEndian.Uint32(m.Data[:4])); code != 0 {
					if err := wrap(i, syscall.Errno(-code)); err != nil {
						errs = append(errs, err)
					}
				}
			}
		}
	}
	return errors.Join(errs...)
}
