package s3store

// SetCopyLimits lets tests take the multipart copy path with small objects.
func (s *Store) SetCopyLimits(threshold, partSize int64) {
	s.copyThreshold, s.copyPart = threshold, partSize
}
