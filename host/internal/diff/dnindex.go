package diff

import "hash/maphash"

// dnIndex finds wants by DN, DNs compared as NormDN compares them, without
// keeping a normalized copy of every DN (a tenth of a 100,000-entry
// decision's heap): it is keyed by a hash of the normalized form, and the
// wants of one hash are chained (want.nextDN) and told apart by
// normalizing their DNs again. Of two wants of one DN, the later put
// wins, as in a map. Not safe for concurrent use.
type dnIndex struct {
	m    map[uint64]*want
	hash func([]byte) uint64
	a, b []byte // scratch for normalized DNs
}

func newDNIndex(n int) *dnIndex {
	seed := maphash.MakeSeed()
	return &dnIndex{m: make(map[uint64]*want, n), hash: func(b []byte) uint64 { return maphash.Bytes(seed, b) }}
}

// put indexes w under dn (w's own DN).
func (x *dnIndex) put(dn string, w *want) {
	x.a = appendNormDN(x.a[:0], dn)
	h := x.hash(x.a)
	w.nextDN = nil
	var prev *want
	for o := x.m[h]; o != nil; prev, o = o, o.nextDN {
		x.b = appendNormDN(x.b[:0], o.ref.DN)
		if string(x.b) == string(x.a) { // the same DN: w takes o's place
			w.nextDN = o.nextDN
			if prev == nil {
				x.m[h] = w
			} else {
				prev.nextDN = w
			}
			return
		}
	}
	w.nextDN = x.m[h]
	x.m[h] = w
}

// get returns the want of dn, or nil.
func (x *dnIndex) get(dn string) *want {
	x.a = appendNormDN(x.a[:0], dn)
	for o := x.m[x.hash(x.a)]; o != nil; o = o.nextDN {
		x.b = appendNormDN(x.b[:0], o.ref.DN)
		if string(x.b) == string(x.a) {
			return o
		}
	}
	return nil
}
