package s3store

// SetCopyLimits lets tests take the multipart copy path with small objects.
func (s *Store) SetCopyLimits(threshold, partSize int64) {
	s.copyThreshold, s.copyPart = threshold, partSize
}

// MTimeCacheLen is the number of times the store's cache holds.
func (s *Store) MTimeCacheLen() int {
	s.mtimes.mu.Lock()
	defer s.mtimes.mu.Unlock()
	return len(s.mtimes.young) + len(s.mtimes.old)
}
