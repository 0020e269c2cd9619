package queryapi

import (
	"encoding/json"
	"html/template"
	"net/http"
	"time"

	"github.com/strata-metrics/strata/pkg/endpoint"
)

// storesHandler serves /api/v1/stores: the endpoints by component type, with
// their labels, time ranges, health, last check and last error.
func (a *API) storesHandler(w http.ResponseWriter, _ *http.Request) {
	byType := map[string][]endpoint.Status{}
	if a.cfg.Endpoints != nil {
		for _, st := range a.cfg.Endpoints() {
			t := st.ComponentType
			if t == "" {
				t = "unknown"
			}
			byType[t] = append(byType[t], st)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": byType})
}

var storesPage = template.Must(template.New("stores").Funcs(template.FuncMap{
	"ts": func(ms int64) string {
		if ms <= -62135596800000 || ms >= 253402300799000 {
			return "∞"
		}
		return time.UnixMilli(ms).UTC().Format(time.RFC3339)
	},
}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Strata querier: endpoints</title>
<style>body{font-family:sans-serif}td,th{padding:4px 8px;border-bottom:1px solid #ddd;text-align:left}.bad{color:#b00}</style></head>
<body><h1>Endpoints</h1>
<table><tr><th>Endpoint</th><th>Type</th><th>Labels</th><th>Min time</th><th>Max time</th><th>Health</th><th>Last check</th><th>Last error</th></tr>
{{range .}}<tr><td>{{.Name}}</td><td>{{.ComponentType}}</td><td>{{range .LabelSets}}{{.}}<br>{{end}}</td><td>{{ts .MinTime}}</td><td>{{ts .MaxTime}}</td>
<td>{{if .Healthy}}up{{else}}<span class="bad">down</span>{{end}}</td><td>{{.LastCheck.Format "2006-01-02T15:04:05Z07:00"}}</td><td class="bad">{{.LastError}}</td></tr>
{{end}}</table></body></html>
`))

// storesPageHandler serves a small HTML page listing the endpoints.
func (a *API) storesPageHandler(w http.ResponseWriter, _ *http.Request) {
	var sts []endpoint.Status
	if a.cfg.Endpoints != nil {
		sts = a.cfg.Endpoints()
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = storesPage.Execute(w, sts)
}
