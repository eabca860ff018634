package providers

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// vllmPage is the shape of a vLLM 0.6 metrics page: the gauges among histograms and
// counters that mention the same model.
const vllmPage = `# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",cache_dtype="auto",enable_prefix_caching="True",gpu_memory_utilization="0.9",num_cpu_blocks="2048",num_gpu_blocks="27000",swap_space="4"} 1.0
# HELP vllm:num_requests_running Number of requests currently running on GPU.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="meta-llama/Llama-3.1-8B-Instruct"} 12.0
# HELP vllm:num_requests_swapped Number of requests swapped to CPU.
# TYPE vllm:num_requests_swapped gauge
vllm:num_requests_swapped{model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="meta-llama/Llama-3.1-8B-Instruct"} 3.0
# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.87
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.001",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0
vllm:time_to_first_token_seconds_bucket{le="0.005",model_name="meta-llama/Llama-3.1-8B-Instruct"} 4.0
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="meta-llama/Llama-3.1-8B-Instruct"} 90.0
vllm:time_to_first_token_seconds_count{model_name="meta-llama/Llama-3.1-8B-Instruct"} 90.0
vllm:time_to_first_token_seconds_sum{model_name="meta-llama/Llama-3.1-8B-Instruct"} 12.5
# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 1234.5
`

// vllmV1Page is vLLM 0.10 with data parallelism: one series per engine, and the cache
// gauge under its new name.
const vllmV1Page = `# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="qwen"} 5.0
vllm:num_requests_running{engine="1",model_name="qwen"} 7.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="qwen"} 0.0
vllm:num_requests_waiting{engine="1",model_name="qwen"} 2.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="qwen"} 0.4
vllm:kv_cache_usage_perc{engine="1",model_name="qwen"} 0.6
`

func TestParseVLLM(t *testing.T) {
	cases := []struct {
		name string
		page string
		want vllmGauges
		ok   bool
	}{
		{"vLLM 0.6", vllmPage, vllmGauges{waiting: 3, running: 12, cache: 0.87}, true},
		{"vLLM 0.10 with two engines", vllmV1Page, vllmGauges{waiting: 2, running: 12, cache: 0.6}, true},
		{"untyped, no comments", "vllm:num_requests_running 4\nvllm:num_requests_waiting 1\n", vllmGauges{waiting: 1, running: 4}, true},
		{"running only, no final newline", "vllm:num_requests_running 4", vllmGauges{running: 4}, true},
		{"not vLLM", "# TYPE up gauge\nup 1\n", vllmGauges{}, false},
		{"empty", "", vllmGauges{}, false},
		{"not the text format", "<html>metrics</html>", vllmGauges{}, false},
		{"broken gauge line", "vllm:num_requests_running{model_name=\"x\" 4\n", vllmGauges{}, false},
		{"NaN and negative samples are skipped", "vllm:num_requests_running{a=\"1\"} NaN\nvllm:num_requests_running{a=\"2\"} 3\nvllm:num_requests_waiting -2\n", vllmGauges{running: 3}, true},
		{"cache above 1 is 1", "vllm:num_requests_waiting 0\nvllm:gpu_cache_usage_perc 1.5\n", vllmGauges{cache: 1}, true},
		{"histogram under the gauge's name is not a count", "# TYPE vllm:num_requests_waiting histogram\nvllm:num_requests_waiting_bucket{le=\"+Inf\"} 3\nvllm:num_requests_waiting_count 3\nvllm:num_requests_waiting_sum 1\n", vllmGauges{}, false},
		{"another family mentioning the gauge", "# TYPE alerts gauge\nalerts{expr=\"vllm:num_requests_waiting > 10\"} 1\nvllm:num_requests_waiting 6\n", vllmGauges{waiting: 6}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g, ok, _ := parseVLLM([]byte(tc.page), nil)
			if ok != tc.ok || (ok && g != tc.want) {
				t.Errorf("got %+v %v, want %+v %v", g, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestVLLMScore(t *testing.T) {
	var l vllmLoad
	if _, _, fresh := l.score(3, 0); fresh {
		t.Error("unread load scores as fresh")
	}
	l.set(vllmGauges{waiting: 2, running: 5, cache: 0.5}, 4, 100)
	cases := []struct {
		inflight int64
		want     int64
	}{
		{4, 2*waitingWeight + 5},
		{6, 2*waitingWeight + 5 + 2},
		{0, 2*waitingWeight + 5 - 4},
	}
	for _, tc := range cases {
		if s, c, fresh := l.score(tc.inflight, 100); s != tc.want || c != 0.5 || !fresh {
			t.Errorf("in flight %d: score %d cache %v fresh %v, want %d 0.5 true", tc.inflight, s, c, fresh, tc.want)
		}
	}
	if _, _, fresh := l.score(4, 101); fresh {
		t.Error("a read older than wanted scores as fresh")
	}
	l.set(vllmGauges{}, 9, 200)
	if s, _, _ := l.score(0, 0); s != 0 {
		t.Errorf("score %d, want it floored at 0", s)
	}
}

// FuzzParseVLLM checks that the parser never fails on any page, that what it reports is
// a load, and that filtering the page down to the gauges' lines changes nothing: on any
// page the full parser accepts, the result is what the full parse gives.
func FuzzParseVLLM(f *testing.F) {
	f.Add([]byte(vllmPage))
	f.Add([]byte(vllmV1Page))
	f.Add([]byte("vllm:num_requests_waiting 1\n"))
	f.Add([]byte("# TYPE vllm:num_requests_waiting summary\nvllm:num_requests_waiting{quantile=\"0.5\"} 1\n"))
	f.Add([]byte("{\"vllm:num_requests_running\",a=\"b\"} 2\n"))
	f.Fuzz(func(t *testing.T, page []byte) {
		g, ok, _ := parseVLLM(page, nil)
		if ok {
			for _, v := range []float64{g.waiting, g.running, g.cache} {
				if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
					t.Fatalf("not a load: %+v", g)
				}
			}
			if g.cache > 1 {
				t.Fatalf("cache usage %v", g.cache)
			}
		}
		parser := expfmt.NewTextParser(model.LegacyValidation)
		fams, err := parser.TextToMetricFamilies(bytes.NewReader(page))
		if err != nil {
			return
		}
		w, wok := sumGauge(fams[vllmWaiting])
		r, rok := sumGauge(fams[vllmRunning])
		if ok != (wok || rok) {
			t.Fatalf("filtered parse ok=%v, full parse finds gauges %v %v", ok, wok, rok)
		}
		if ok && (g.waiting != w || g.running != r) {
			t.Fatalf("filtered %v/%v, full %v/%v", g.waiting, g.running, w, r)
		}
	})
}

func TestMentionsVLLMGauge(t *testing.T) {
	for _, line := range strings.Split(strings.TrimSpace(vllmPage), "\n") {
		want := strings.Contains(line, "vllm:num_requests_running") || strings.Contains(line, "vllm:num_requests_waiting") || strings.Contains(line, "vllm:gpu_cache_usage_perc")
		if got := mentionsVLLMGauge([]byte(line)); got != want {
			t.Errorf("%q: %v, want %v", line, got, want)
		}
	}
}
