#!/usr/bin/env bash
# The whole Strata system on 127.0.0.1: an HA pair of real Prometheus
# servers with a sidecar each, a store gateway, a querier and a compactor,
# over a filesystem bucket (or DEMO_OBJSTORE=<objstore config file>), with
# three days of history backfilled by blockgen. Run it with `make demo`;
# Ctrl-C stops everything it started.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$root/bin
tools=$root/.tools/bin
demo=$root/.demo
logs=$demo/logs
pids=()

stop() {
	trap - INT TERM EXIT
	if ((${#pids[@]})); then
		echo
		echo "Stopping ${#pids[@]} processes..."
		kill -TERM "${pids[@]}" 2>/dev/null || true
		for _ in $(seq 1 50); do
			alive=0
			for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
			((alive)) || break
			sleep 0.1
		done
		kill -KILL "${pids[@]}" 2>/dev/null || true
		wait 2>/dev/null || true
	fi
	echo "Stopped. Logs are in $logs."
}
trap stop INT TERM EXIT

# A previous run may still hold the ports if it was killed hard.
for port in 9090 9091 10901 10902 10905 10906 10907 10911 10912 10921 10922; do
	if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
		echo "Port $port on 127.0.0.1 is in use; stop what uses it (a previous demo?) and run again." >&2
		exit 1
	fi
done

rm -rf "$demo/prometheus-a" "$demo/prometheus-b" "$demo/store" "$demo/compactor" "$logs"
mkdir -p "$logs" "$demo/bucket"

objstore=${DEMO_OBJSTORE:-}
if [[ -z $objstore ]]; then
	rm -rf "$demo/bucket"
	mkdir -p "$demo/bucket"
	objstore=$demo/objstore.yml
	printf 'type: FILESYSTEM\nconfig:\n  directory: %s\n' "$demo/bucket" >"$objstore"
fi

start() { # name, then the command
	local name=$1
	shift
	"$@" >"$logs/$name.log" 2>&1 &
	pids+=($!)
}

wait_ready() { # name, url
	for _ in $(seq 1 600); do
		if curl -fsS -o /dev/null "$2" 2>/dev/null; then
			return 0
		fi
		for p in "${pids[@]}"; do
			kill -0 "$p" 2>/dev/null || { echo "A process exited early; see $logs/$1.log:" >&2; tail -20 "$logs/$1.log" >&2; exit 1; }
		done
		sleep 0.2
	done
	echo "$1 did not become ready at $2; see $logs/$1.log" >&2
	exit 1
}

# History: three days of the HA pair, ending two hours ago on a 2h boundary,
# so compacted and downsampled blocks appear at once.
now=$(date +%s)
end=$(((now / 7200 - 1) * 7200))
echo "Backfilling 3 days of an HA pair into the bucket with blockgen..."
"$bin/blockgen" --objstore.config-file="$objstore" --targets=20 \
	--start="$(date -u -d "@$((end - 3 * 86400))" +%Y-%m-%dT%H:%M:%SZ)" --end="$(date -u -d "@$end" +%Y-%m-%dT%H:%M:%SZ)" \
	--replicas=2 --external-label=cluster=demo >"$logs/blockgen.log" 2>&1

strata_targets="'127.0.0.1:10902', '127.0.0.1:10906', '127.0.0.1:10907', '127.0.0.1:10912', '127.0.0.1:10922'"
for r in a b; do
	mkdir -p "$demo/prometheus-$r"
	cat >"$demo/prometheus-$r/prometheus.yml" <<YAML
global:
  scrape_interval: 5s
  external_labels:
    cluster: demo
    replica: $r
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ['127.0.0.1:9090', '127.0.0.1:9091']
  - job_name: strata
    static_configs:
      - targets: [$strata_targets]
YAML
done
start prometheus-a "$tools/prometheus" --config.file="$demo/prometheus-a/prometheus.yml" --storage.tsdb.path="$demo/prometheus-a/data" \
	--web.listen-address=127.0.0.1:9090 --storage.tsdb.min-block-duration=5m --storage.tsdb.max-block-duration=5m
start prometheus-b "$tools/prometheus" --config.file="$demo/prometheus-b/prometheus.yml" --storage.tsdb.path="$demo/prometheus-b/data" \
	--web.listen-address=127.0.0.1:9091 --storage.tsdb.min-block-duration=5m --storage.tsdb.max-block-duration=5m
wait_ready prometheus-a http://127.0.0.1:9090/-/ready
wait_ready prometheus-b http://127.0.0.1:9091/-/ready

start sidecar-a "$bin/sidecar" --prometheus.url=http://127.0.0.1:9090 --tsdb.path="$demo/prometheus-a/data" \
	--objstore.config-file="$objstore" --grpc-address=127.0.0.1:10911 --http-address=127.0.0.1:10912
start sidecar-b "$bin/sidecar" --prometheus.url=http://127.0.0.1:9091 --tsdb.path="$demo/prometheus-b/data" \
	--objstore.config-file="$objstore" --grpc-address=127.0.0.1:10921 --http-address=127.0.0.1:10922
start store "$bin/store" --objstore.config-file="$objstore" --data-dir="$demo/store" \
	--grpc-address=127.0.0.1:10905 --http-address=127.0.0.1:10906 --sync-block-duration=1m
start compactor "$bin/compactor" --objstore.config-file="$objstore" --data-dir="$demo/compactor" --wait --wait-interval=1m \
	--consistency-delay=0s --delete-delay=10m --deduplication.replica-label=replica --http-address=127.0.0.1:10907
start querier "$bin/querier" --endpoint=127.0.0.1:10911 --endpoint=127.0.0.1:10921 --endpoint=127.0.0.1:10905 \
	--query.replica-label=replica --grpc-address=127.0.0.1:10901 --http-address=127.0.0.1:10902
for c in sidecar-a:10912 sidecar-b:10922 store:10906 compactor:10907 querier:10902; do
	wait_ready "${c%%:*}" "http://127.0.0.1:${c##*:}/-/ready"
done

# Ready when the querier answers a deduplicated query over live and
# backfilled data.
echo "Waiting for the querier to see live and backfilled data..."
hist=$((end - 86400))
for _ in $(seq 1 300); do
	live=$(curl -fsS "http://127.0.0.1:10902/api/v1/query?query=count(up%7Bjob%3D%22prometheus%22%7D)" 2>/dev/null | grep -o '"value":\[[^]]*\]' || true)
	old=$(curl -fsS "http://127.0.0.1:10902/api/v1/query?query=count(node_load1)&time=$hist" 2>/dev/null | grep -o '"value":\[[^]]*\]' || true)
	if [[ $live == *'"2"'* && $old == *'"20"'* ]]; then
		break
	fi
	sleep 1
done

# The compactor compacts the backfill into a 2-day block and downsamples it
# to 5m at its first run; say so once it has.
echo "Waiting for the compactor's first downsampled block..."
for _ in $(seq 1 180); do
	if curl -fsS http://127.0.0.1:10907/metrics 2>/dev/null | grep -q '^strata_compactor_downsampled_blocks_total{resolution="5m"} [1-9]'; then
		echo "5m downsampled data are in the bucket (the store gateway loads them at its next sync, within a minute)."
		break
	fi
	sleep 1
done

cat <<INFO

Strata is running on 127.0.0.1 (logs in $logs):

  Prometheus a / b     http://127.0.0.1:9090  http://127.0.0.1:9091
  sidecars (gRPC)      127.0.0.1:10911  127.0.0.1:10921
  store gateway        gRPC 127.0.0.1:10905  HTTP http://127.0.0.1:10906
  compactor            http://127.0.0.1:10907/metrics
  querier              http://127.0.0.1:10902   <- point Grafana and promtool here
  bucket               $objstore

Try (history ends at $(date -u -d "@$end" +%FT%TZ); live data since the start):
  curl -g 'http://127.0.0.1:10902/api/v1/query?query=up'
  curl -g 'http://127.0.0.1:10902/api/v1/query?query=up&dedup=false'
  curl -g 'http://127.0.0.1:10902/api/v1/query?query=sum%20by%20(mode)%20(rate(node_cpu_seconds_total[5m]))&time=$hist'
  curl -g 'http://127.0.0.1:10902/api/v1/query?query=count_over_time(node_load1[1h])&time=$hist&max_source_resolution=5m'   # 12 per hour where 5m blocks serve, 240 from raw data
  curl http://127.0.0.1:10902/api/v1/stores
  $tools/promtool query instant --time=$hist http://127.0.0.1:10902 'count(node_load1)'
  $tools/promtool query range --start=$((end - 3 * 86400)) --end=$end --step=1h http://127.0.0.1:10902 'max(node_load1)'
  open http://127.0.0.1:10902/stores

Ctrl-C stops everything.
INFO
stopping=0
trap 'stopping=1; stop; exit 0' INT TERM
wait -n "${pids[@]}" || true
# Ctrl-C reaches this shell and every process at once; the processes exit
# on it by themselves, and bash then drops its own SIGINT (it leaves Ctrl-C
# to a child that handles it). So: if every process goes within seconds, it
# was Ctrl-C; if the others keep running, one of them crashed.
for _ in $(seq 1 30); do
	alive=0
	for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
	((alive)) || break
	sleep 0.1
done
((stopping || !alive)) || echo "A process exited unexpectedly; see $logs." >&2
