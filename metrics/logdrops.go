package metrics

// WatchLogDrops makes tollgate_log_lines_dropped_total read f, the log queue's count
// of the lines it dropped since the process started.
func (m *Metrics) WatchLogDrops(f func() uint64) { m.logDrops.Store(&f) }

func (m *Metrics) logLinesDropped() float64 {
	if f := m.logDrops.Load(); f != nil {
		return float64((*f)())
	}
	return 0
}
