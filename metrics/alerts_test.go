package metrics

import (
	"testing"

	dto "github.com/prometheus/client_model/go"
)

func TestObserveAlerts(t *testing.T) {
	m := New(Options{NoRuntime: true})
	m.ObserveAlerts(func() []AlertSink {
		return []AlertSink{{Name: "hr", Kind: "email", Delivered: 3, Failed: 2, Dropped: 1, Queued: 4}}
	})
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, mt := range f.GetMetric() {
			if len(mt.GetLabel()) == 2 && mt.GetLabel()[0].GetValue() == "email" && mt.GetLabel()[1].GetValue() == "hr" {
				got[f.GetName()] = value(mt)
			}
		}
	}
	want := map[string]float64{"sftpgw_alerts_delivered_total": 3, "sftpgw_alerts_failed_total": 2,
		"sftpgw_alerts_dropped_total": 1, "sftpgw_alerts_queued": 4}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}

func value(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	return m.GetGauge().GetValue()
}
