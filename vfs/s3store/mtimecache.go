package s3store

import (
	"sync"
	"time"
)

// DefaultMTimeCache is the number of objects whose times a store remembers
// between listings (about 150 bytes each plus the key).
const DefaultMTimeCache = 100_000

// mtimeSettle is how long after its Last-Modified second an object's HEAD
// must be answered (by the server's clock) before its time is cached.
// Listings identify a version only by ETag, size and Last-Modified, which
// S3 gives in whole seconds: two writes of the same bytes within one
// second (a PUT, then a setstat copy by another gateway or tool) look the
// same there. A HEAD at least a second after that second has seen the
// last write that started in it.
const mtimeSettle = 2 * time.Second

// mtimeCache remembers, per key, the time read by HEAD for one version of
// the object, identified as a listing shows it (ETag, size, LastModified).
// A listing entry whose version matches needs no HEAD; any other version
// (an overwrite, a setstat copy: both change LastModified) misses and is
// headed again. Bounded by two generations: when the young one is full it
// becomes the old one and the previous old one is dropped, so recently
// used entries survive and memory stays under max entries.
type mtimeCache struct {
	max int // 0: disabled

	mu       sync.Mutex
	young    map[string]mtimeEntry
	old      map[string]mtimeEntry
	gen      uint64            // bumped by every forget and generation change
	floor    uint64            // HEADs started before this are not kept
	forgotAt map[string]uint64 // key → gen of its last forget, since floor
}

type mtimeEntry struct {
	etag  string
	size  int64
	lm    int64 // LastModified, Unix nanoseconds as the listing gives it
	mtime time.Time
}

func newMTimeCache(max int) *mtimeCache {
	if max < 0 {
		max = 0
	}
	return &mtimeCache{max: max, young: map[string]mtimeEntry{}, old: map[string]mtimeEntry{}, forgotAt: map[string]uint64{}}
}

// get returns the cached time of key's version (etag, size, lm).
func (c *mtimeCache) get(key, etag string, size int64, lm time.Time) (time.Time, bool) {
	if c.max == 0 || etag == "" {
		return time.Time{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.young[key]
	if !ok {
		if e, ok = c.old[key]; ok {
			c.putLocked(key, e) // still in use: keep it
		}
	}
	if !ok || e.etag != etag || e.size != size || e.lm != lm.UnixNano() {
		return time.Time{}, false
	}
	return e.mtime, true
}

// start returns a token for put: a forget of the key between start (taken
// before the HEAD is sent) and put means the HEAD may have seen the
// version the gateway just replaced, so its answer is not kept.
func (c *mtimeCache) start() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

func (c *mtimeCache) put(key string, tok uint64, e mtimeEntry) {
	if c.max == 0 || e.etag == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if tok < c.floor || c.forgotAt[key] > tok {
		return
	}
	c.putLocked(key, e)
}

func (c *mtimeCache) putLocked(key string, e mtimeEntry) {
	if _, ok := c.young[key]; !ok && len(c.young) >= (c.max+1)/2 {
		c.old, c.young = c.young, make(map[string]mtimeEntry, len(c.young))
	}
	delete(c.old, key)
	c.young[key] = e
}

// forget drops key: the gateway is changing or has changed the object
// (setstat, upload commit, copy onto it, delete). Called both before the
// change is sent and after it returns.
func (c *mtimeCache) forget(key string) {
	if c.max == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.young, key)
	delete(c.old, key)
	c.gen++
	if len(c.forgotAt) >= c.max {
		// Bound the marks: HEADs already in flight are then not kept.
		c.forgotAt = map[string]uint64{}
		c.floor = c.gen
	}
	c.forgotAt[key] = c.gen
}
