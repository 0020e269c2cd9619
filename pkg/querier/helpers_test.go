package querier

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/tsdb"
)

// waitStores polls /api/v1/stores until n endpoints are healthy.
func waitStores(t *testing.T, base string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/api/v1/stores")
		if err == nil {
			var body struct {
				Data map[string][]struct {
					Healthy bool `json:"healthy"`
				} `json:"data"`
			}
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			healthy := 0
			for _, eps := range body.Data {
				for _, e := range eps {
					if e.Healthy {
						healthy++
					}
				}
			}
			if err == nil && healthy == n {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d healthy stores not seen within 30s (last err %v)", n, err)
		}
		time.Sleep(50 * time.Millisecond) // bounded poll interval
	}
}

// rawQuery runs an instant query with extra Thanos parameters over HTTP and
// returns the vector, or the API's error.
func rawQuery(t *testing.T, base, q string, at time.Time, extra string) (model.Value, error) {
	t.Helper()
	u := fmt.Sprintf("%s/api/v1/query?query=%s&time=%s&%s", base, url.QueryEscape(q), strconv.FormatInt(at.Unix(), 10), extra)
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result model.Vector `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if body.Status != "success" {
		return nil, errors.New(body.Error)
	}
	return body.Data.Result, nil
}

func mustRange(t *testing.T, e *promql.Engine, db *tsdb.DBReadOnly, q string, r promv1.Range) any {
	t.Helper()
	qry, err := e.NewRangeQuery(ctx(t), db, nil, q, r.Start, r.End, r.Step)
	if err != nil {
		t.Fatal(err)
	}
	res := qry.Exec(ctx(t))
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	return res.Value
}

func rangeByMetric(t *testing.T, m model.Matrix) map[string][]model.SamplePair {
	out := map[string][]model.SamplePair{}
	for _, s := range m {
		out[s.Metric.String()] = s.Values
	}
	return out
}
