package authn

import "crypto/rand"

const nameAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// GenerateName returns a fresh pseudonymous user name such as "u7k2q":
// "u" plus random [a-z0-9] characters from crypto/rand, so names reveal
// nothing and cannot be enumerated in order. existing reports names already
// taken; after repeated collisions (a crowded name space) the random part
// grows by one character.
func GenerateName(existing func(string) bool) string {
	n := 4
	for tries := 1; ; tries++ {
		name := "u" + randomString(n)
		if existing == nil || !existing(name) {
			return name
		}
		if tries%8 == 0 && n < 31 {
			n++
		}
	}
}

// randomString draws uniformly from nameAlphabet (rejection sampling avoids
// the modulo bias of b % 36).
func randomString(n int) string {
	const limit = 256 - 256%len(nameAlphabet)
	out := make([]byte, 0, n)
	buf := make([]byte, 2*n)
	for len(out) < n {
		rand.Read(buf) // never fails (Go >= 1.24 crashes instead)
		for _, b := range buf {
			if int(b) < limit && len(out) < n {
				out = append(out, nameAlphabet[int(b)%len(nameAlphabet)])
			}
		}
	}
	return string(out)
}
