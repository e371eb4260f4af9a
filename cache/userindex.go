package cache

import (
	"hash/maphash"

	"github.com/ldapproxy/ldapproxy/internal/slots"
)

// userIndex finds a snapshot's users by one key of theirs (DN, user name, mail): an
// open-addressing hash table of 4-byte slots over the snapshot's user list (package
// slots' probing), three for every two users, each 0 (empty) or 1 + a position in the
// list, whose record holds the key, with bits of the key's hash above it (the tag:
// a probe passes a slot whose tag differs without reading its record). Where a map held
// a string header and a pointer per user, this holds 6 bytes. A key two users share is
// marked shared: it finds neither (addUnique's rule). Built once per snapshot, from the
// list, and never changed.
type userIndex struct {
	list  []userRec
	rs    regions // list's
	key   int     // keyDN, keyName or keyMail
	slots []uint32
	// posBits is the number of low bits of a slot that hold 1 + a position.
	posBits uint
}

// sharedKey marks a slot whose key more than one user has.
const sharedKey = 1 << 31

// indexSeed is the hash seed of every userIndex of this process: a directory's values
// cannot be chosen to collide.
var indexSeed = maphash.MakeSeed()

// newUserIndex indexes list, whose records are in rs, by key (keyDN, keyName, keyMail);
// users whose key is "" are left out. It returns nil for a list too long for its
// positions, which no directory comes near.
func newUserIndex(list []userRec, rs regions, key int) *userIndex {
	if len(list) >= sharedKey-1 {
		return nil
	}
	size := slots.ForTagged(len(list))
	x := &userIndex{list: list, rs: rs, key: key, slots: make([]uint32, size), posBits: slots.PosBits(len(list))}
	posMask := uint32(1)<<x.posBits - 1
	for pos := range list {
		k := x.keyOf(&list[pos])
		if k == "" {
			continue
		}
		h := maphash.String(indexSeed, k)
		tag := x.tag(h)
		i := slots.Home(h, size)
		for {
			s := x.slots[i]
			if s == 0 {
				x.slots[i] = tag | uint32(pos+1)
				break
			}
			if s&^sharedKey&^posMask == tag && x.keyOf(&list[s&posMask-1]) == k {
				x.slots[i] = s | sharedKey
				break
			}
			i = slots.Next(i, size)
		}
	}
	return x
}

// tag returns the bits of hash h that a slot of its key holds above the position, below
// sharedKey.
func (x *userIndex) tag(h uint64) uint32 {
	return slots.Tag(h, x.posBits) &^ sharedKey
}

// get returns the user whose key is k, as a map kept by addUnique would: nil and true
// for a key several users share, nil and false for one none has.
func (x *userIndex) get(k string) (*userRec, bool) {
	if x == nil || k == "" {
		return nil, false
	}
	size := len(x.slots)
	h := maphash.String(indexSeed, k)
	tag := x.tag(h)
	posMask := uint32(1)<<x.posBits - 1
	for i := slots.Home(h, size); ; i = slots.Next(i, size) {
		s := x.slots[i]
		if s == 0 {
			return nil, false
		}
		if s&^sharedKey&^posMask != tag {
			continue
		}
		if r := &x.list[s&posMask-1]; x.keyOf(r) == k {
			if s&sharedKey != 0 {
				return nil, true
			}
			return r, true
		}
	}
}

// lookup is get without telling a shared key from a missing one.
func (x *userIndex) lookup(k string) *userRec {
	r, _ := x.get(k)
	return r
}

// keyOf returns r's key that x indexes.
func (x *userIndex) keyOf(r *userRec) string { return r.key(x.rs, x.key) }
