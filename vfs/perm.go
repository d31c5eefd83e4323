package vfs

import (
	"fmt"
	"sort"
	"strings"
)

// Op is one kind of file operation the choke point decides on.
type Op uint16

// The operations. Download covers every way of reading content; there is
// deliberately no other read path (no copy, hash or link extensions).
const (
	OpList Op = 1 << iota
	OpStat
	OpDownload
	OpUpload    // create a new object
	OpOverwrite // replace an existing object
	OpDelete
	OpRename
	OpMkdir
	OpRmdir
	OpSetstat
)

var opNames = map[Op]string{
	OpList: "list", OpStat: "stat", OpDownload: "download", OpUpload: "upload",
	OpOverwrite: "overwrite", OpDelete: "delete", OpRename: "rename", OpMkdir: "mkdir",
	OpRmdir: "rmdir", OpSetstat: "setstat",
}

func (o Op) String() string {
	if n, ok := opNames[o]; ok {
		return n
	}
	return fmt.Sprintf("op(%d)", uint16(o))
}

// PermSet is the set of operations a session may perform.
type PermSet uint16

// PermAll allows everything.
const PermAll PermSet = PermSet(OpList | OpStat | OpDownload | OpUpload | OpOverwrite |
	OpDelete | OpRename | OpMkdir | OpRmdir | OpSetstat)

// Has reports whether op is allowed.
func (p PermSet) Has(op Op) bool { return p&PermSet(op) != 0 }

// With returns p plus op; Without returns p minus op.
func (p PermSet) With(op Op) PermSet    { return p | PermSet(op) }
func (p PermSet) Without(op Op) PermSet { return p &^ PermSet(op) }

// ParsePermSet parses operation names ("list", "download", ... or "*").
func ParsePermSet(names []string) (PermSet, error) {
	var p PermSet
	for _, n := range names {
		n = strings.TrimSpace(strings.ToLower(n))
		if n == "*" {
			p |= PermAll
			continue
		}
		found := false
		for op, name := range opNames {
			if name == n {
				p |= PermSet(op)
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown permission %q (known: %s, or \"*\")", n, strings.Join(knownOpNames(), ", "))
		}
	}
	return p, nil
}

// Names lists the allowed operations, sorted.
func (p PermSet) Names() []string {
	var out []string
	for op, name := range opNames {
		if p.Has(op) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func knownOpNames() []string {
	return PermAll.Names()
}
