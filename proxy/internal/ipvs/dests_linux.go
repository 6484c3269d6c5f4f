package ipvs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// More IPVS generic netlink numbers (include/uapi/linux/ip_vs.h).
const (
	ipvsCmdSetDest         = 6
	ipvsCmdDelDest         = 7
	ipvsCmdGetDest         = 8
	ipvsDestAttrActiveConn = 7
	ipvsDestAttrInactConn  = 8
	// nlaTypeMask drops NLA_F_NESTED and NLA_F_NET_BYTEORDER from a type.
	nlaTypeMask = 0x3fff
)

// One Service change reads its virtual server's real servers and adds or
// removes one: over moby/ipvs each call costs a deadline (a clock read),
// a getsockname, a 64 KiB receive buffer and a netpoller round, which in
// user-mode-linux (a system call is a ptrace round trip) is milliseconds
// per change. These go over the batcher's plain blocking sockets instead:
// one sendto and one or two recvfrom each.

// destCmd runs one destination command (add, set or delete) for each of
// rs in one batch; ENOENT and ESRCH (no such real or virtual server) match
// ErrNotFound.
func (b *batcher) destCmd(cmd uint8, k VSKey, rs []RealServer, verb string) error {
	enc := func(m *msgBuf, i int) {
		m.genl(cmd)
		m.endNest(m.service(k))
		m.dest(rs[i])
	}
	return b.send(b.fd, b.family, 0, len(rs), enc, func(i int, err error) error {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ESRCH) {
			err = fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		return fmt.Errorf("%s real server %s of %s: %w", verb, rs[i].AddrPort(), k, err)
	})
}

// dumper reads real servers on a socket of its own, so the background
// reconcile's reads and a sync's never wait for each other (LinuxOS keeps
// two).
type dumper struct {
	fd     int
	family uint16
	buf    []byte
	out    []byte
	seq    uint32
}

func newDumper(family uint16) (*dumper, error) {
	fd, err := netlinkSocket(unix.NETLINK_GENERIC)
	if err != nil {
		return nil, err
	}
	return &dumper{fd: fd, family: family, buf: make([]byte, 1<<16)}, nil
}

func (d *dumper) close() { unix.Close(d.fd) }

// dests dumps k's real servers.
func (d *dumper) dests(k VSKey) ([]RealServer, error) {
	d.seq++
	m := msgBuf{b: d.out[:0]}
	h := m.begin(d.family, unix.NLM_F_REQUEST|unix.NLM_F_DUMP, d.seq)
	m.genl(ipvsCmdGetDest)
	m.endNest(m.service(k))
	m.end(h)
	d.out = m.b
	if err := unix.Sendto(d.fd, m.b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("netlink send: %w", err)
	}
	var out []RealServer
	for {
		n, _, err := unix.Recvfrom(d.fd, d.buf, 0)
		if err != nil {
			return nil, fmt.Errorf("netlink receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(d.buf[:n])
		if err != nil {
			return nil, fmt.Errorf("netlink receive: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != d.seq {
				continue // left over from an earlier request that failed
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return nil, fmt.Errorf("short netlink error message")
				}
				code := int32(binary.NativeEndian.Uint32(m.Data[:4]))
				if code == 0 {
					return out, nil
				}
				err := syscall.Errno(-code)
				if errors.Is(err, syscall.ESRCH) || errors.Is(err, syscall.ENOENT) {
					return nil, fmt.Errorf("virtual server %s: %w: %w", k, ErrNotFound, err)
				}
				return nil, fmt.Errorf("real servers of %s: %w", k, err)
			}
			r, err := parseDest(m.Data, k.Addr.Is6())
			if err != nil {
				return nil, fmt.Errorf("real servers of %s: %w", k, err)
			}
			out = append(out, r)
		}
	}
}

// parseDest reads one IPVS_CMD_NEW_DEST message (genl header, then the
// nested IPVS_CMD_ATTR_DEST).
func parseDest(data []byte, v6 bool) (RealServer, error) {
	if len(data) < nl.SizeofGenlmsg {
		return RealServer{}, fmt.Errorf("short destination message")
	}
	outer, err := nl.ParseRouteAttr(data[nl.SizeofGenlmsg:])
	if err != nil {
		return RealServer{}, err
	}
	var r RealServer
	var addr []byte
	af := afOf(v6)
	for _, o := range outer {
		if o.Attr.Type&nlaTypeMask != ipvsCmdAttrDest {
			continue
		}
		attrs, err := nl.ParseRouteAttr(o.Value)
		if err != nil {
			return RealServer{}, err
		}
		for _, a := range attrs {
			switch a.Attr.Type & nlaTypeMask {
			case ipvsDestAttrAF:
				if len(a.Value) >= 2 {
					af = binary.NativeEndian.Uint16(a.Value)
				}
			case ipvsDestAttrAddr:
				addr = a.Value
			case ipvsDestAttrPort:
				if len(a.Value) >= 2 {
					r.Port = binary.BigEndian.Uint16(a.Value)
				}
			case ipvsDestAttrWeight:
				if len(a.Value) >= 4 {
					r.Weight = int(int32(binary.NativeEndian.Uint32(a.Value)))
				}
			case ipvsDestAttrActiveConn:
				if len(a.Value) >= 4 {
					r.ActiveConns = int(binary.NativeEndian.Uint32(a.Value))
				}
			case ipvsDestAttrInactConn:
				if len(a.Value) >= 4 {
					r.InactiveConns = int(binary.NativeEndian.Uint32(a.Value))
				}
			}
		}
	}
	// The kernel sends the address as a 16-byte union nf_inet_addr.
	switch {
	case af == unix.AF_INET && len(addr) >= 4:
		r.Addr = netip.AddrFrom4([4]byte(addr[:4]))
	case af == unix.AF_INET6 && len(addr) >= 16:
		r.Addr = netip.AddrFrom16([16]byte(addr[:16]))
	default:
		return RealServer{}, fmt.Errorf("destination without a usable address (family %d, %d bytes)", af, len(addr))
	}
	return r, nil
}
