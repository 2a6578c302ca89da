# The proxy section of scripts/bench, sourced by it at the top level: it uses the
# script's helpers and variables, and its own variables stay visible to the report.
# direct vs bare vs metered (and metered with Durable Objects on tmpfs), non-streamed
# under oha and streamed with curl.

# ---------------------------------------------------------------- fake upstream
probe_upstream() { # prints the p50 (us) of 1 s of sequential requests to the upstream
  oha -z 1s -c 1 --no-tui --output-format json -m POST -H 'content-type: application/json' \
    -d "$CHAT_BODY" "$UPSTREAM_URL/v1/chat/completions" 2>/dev/null |
    jq -r '.latencyPercentiles.p50 * 1e6 | floor'
}

step "probing the fake upstream"
UPSTREAM_P50=$(probe_upstream)
[ -n "$UPSTREAM_P50" ] || die "probing the fake upstream failed"
info "sequential p50 $UPSTREAM_P50 us"
# tests/support/upstream.rs sets TCP_NODELAY on every connection: without it, Nagle's
# algorithm and the client's delayed ACK (about 40 ms) would be the floor of every point.
[ "$UPSTREAM_P50" -le 10000 ] ||
  die "the fake upstream answers in $UPSTREAM_P50 us (p50): is TCP_NODELAY still set in tests/support/upstream.rs?"

# ---------------------------------------------------------------- workerd
WORKER_PORT=$(free_port 18787) || die "no free port"
# A second copy of the Worker keeps its Durable Object storage on tmpfs, when there is
# one: the difference between the two metered rows is the cost of flushing SQLite to
# disk (workerd fsyncs each Durable Object transaction).
TMPFS_DO=""
if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then
  TMPFS_DO=$(mktemp -d /dev/shm/edgemeter-bench.XXXXXX)
  TMPFS_PORT=$(free_port $((WORKER_PORT + 1))) || die "no free port"
fi
# Bindings come from wrangler.toml; the bench overrides the upstream, the catalog and
# the admin token, and turns on the bare route.
instances=(--instance "$WORKER_PORT:$WORK/do")
[ -z "$TMPFS_DO" ] || instances+=(--instance "$TMPFS_PORT:$TMPFS_DO")
# The baseline: a bare JavaScript pass-through Worker in the same workerd process.
BARE_JS_PORT=$(free_port $((WORKER_PORT + 2))) || die "no free port"
instances+=(--bare-js "$BARE_JS_PORT:$UPSTREAM_URL")
python3 scripts/bench.d/workerd_config.py --wrangler wrangler.toml \
  --js "$MAIN_MODULE" --wasm "$WASM_MODULE" "${instances[@]}" \
  --var "UPSTREAM_URL=$UPSTREAM_URL" --var "ADMIN_TOKEN=$ADMIN_TOKEN" --var "KEY_SECRET=$ADMIN_TOKEN-keys" \
  --var BENCH_BARE_ROUTE=1 --var-file CATALOG=catalog.json >"$WORK/config.capnp" ||
  die "could not write the workerd config"

step "starting workerd serve on 127.0.0.1:$WORKER_PORT${TMPFS_DO:+ and :$TMPFS_PORT (Durable Objects on tmpfs)}"
WORKERD_LOG=$WORK/workerd.log
"$WORKERD" serve "$WORK/config.capnp" --experimental >"$WORKERD_LOG" 2>&1 &
WORKERD_PID=$!
WORKER_URL=http://127.0.0.1:$WORKER_PORT
TMPFS_URL=${TMPFS_DO:+http://127.0.0.1:$TMPFS_PORT}
wait_healthy "$WORKER_URL" "$WORKERD_PID"
[ -z "$TMPFS_URL" ] || curl -sf "$TMPFS_URL/healthz" >/dev/null || die "the tmpfs Worker did not answer /healthz"
info "workerd is up (pid $WORKERD_PID)"

# ---------------------------------------------------------------- customer + key
live_key() { # BASE_URL ID PLAN: creates the customer there and prints a live key
  local resp key
  resp=$(admin "$1" POST /admin/v1/customers "{\"id\":\"$2\",\"plan\":\"$3\"}")
  [ "$(tail -n 1 <<<"$resp")" = 201 ] || die "creating the customer failed: $resp"
  resp=$(admin "$1" POST "/admin/v1/customers/$2/keys" '{"mode":"live"}')
  [ "$(tail -n 1 <<<"$resp")" = 201 ] || die "issuing a key failed: $resp"
  key=$(head -n -1 <<<"$resp" | jq -r .key)
  [[ "$key" == em_live_* ]] || die "unexpected key in: $resp"
  echo "$key"
}

# ---------------------------------------------------------------- targets
TARGETS=(direct bare_js bare metered)
declare -A URL AUTH LABEL BASE SENT
URL[direct]=$UPSTREAM_URL/v1/chat/completions
URL[bare_js]=http://127.0.0.1:$BARE_JS_PORT/v1/chat/completions
URL[bare]=$WORKER_URL/bare/v1/chat/completions
URL[metered]=$WORKER_URL/v1/chat/completions
LABEL[direct]=direct
LABEL[bare_js]="bare JS"
LABEL[bare]=bare
LABEL[metered]=metered
BASE[metered]=$WORKER_URL
TARGETS+=(metered_near)
URL[metered_near]=$WORKER_URL/v1/chat/completions
LABEL[metered_near]="metered, per request"
BASE[metered_near]=$WORKER_URL
declare -A CUSTOMER=([metered]=bench [metered_tmpfs]=bench [metered_near]=near)
if [ -n "$TMPFS_URL" ]; then
  TARGETS+=(metered_tmpfs)
  URL[metered_tmpfs]=$TMPFS_URL/v1/chat/completions
  LABEL[metered_tmpfs]="metered, DO on tmpfs"
  BASE[metered_tmpfs]=$TMPFS_URL
fi
AUTH[direct]=""
AUTH[bare_js]=""
AUTH[bare]=""
step "creating the bench customers (plans \"bench\", every limit high, and \"near\") and live keys"
for t in "${TARGETS[@]}"; do
  [ -n "${BASE[$t]:-}" ] || continue
  key=$(live_key "${BASE[$t]}" "${CUSTOMER[$t]}" "${CUSTOMER[$t]}")
  AUTH[$t]="Bearer $key"
  SENT[$t]=0
  info "${LABEL[$t]}: key ${key:0:16}..."
done

step "checking that every target answers correctly"
for t in "${TARGETS[@]}"; do
  args=(-sS -X POST "${URL[$t]}" -H 'content-type: application/json' -D "$WORK/check.h" -o "$WORK/check.b" -w '%{http_code}')
  [ -z "${AUTH[$t]}" ] || args+=(-H "authorization: ${AUTH[$t]}")
  code=$(curl "${args[@]}" --data "$CHAT_BODY")
  [ "$code" = 200 ] || die "$t answered $code: $(cat "$WORK/check.b")"
  jq -e '.usage.completion_tokens > 0' "$WORK/check.b" >/dev/null || die "$t: no usage in $(cat "$WORK/check.b")"
  if [ -n "${BASE[$t]:-}" ]; then
    grep -qi '^x-edgemeter-cost:' "$WORK/check.h" || die "$t: metered responses carry no x-edgemeter-cost header"
    SENT[$t]=$((${SENT[$t]} + 2))
  fi
  code=$(curl "${args[@]}" --data "$STREAM_BODY")
  [ "$code" = 200 ] || die "$t (stream) answered $code: $(cat "$WORK/check.b")"
  grep -q '^data: \[DONE\]' "$WORK/check.b" || die "$t (stream): no [DONE] in $(cat "$WORK/check.b")"
  info "${LABEL[$t]}: ok"
done

# ---------------------------------------------------------------- measuring helpers
HZ=$(getconf CLK_TCK)
proc_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # utime + stime of a process
# "pid ticks" for every process but this script, workerd and the upstream: its CPU time
# (user + system) plus that of its children that ended, so a short-lived compiler run
# still counts towards its parent.
others_snapshot() {
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v a="$$" -v b="$WORKERD_PID" -v c="$UPSTREAM_PID" '{
    pid = $1; i = length($0); while (substr($0, i, 1) != ")") i--
    split(substr($0, i + 2), f, " ")  # f[1] is field 3 (state)
    if (pid != a && pid != b && pid != c) print pid, f[12] + f[13] + f[14] + f[15] }'
}
others_ticks() { # BEFORE AFTER: CPU ticks other processes used between the snapshots
  awk 'NR == FNR { before[$1] = $2; next }
       { d = $2 - (($1 in before) ? before[$1] : 0); if (d > 0) sum += d }
       END { print sum + 0 }' "$1" "$2"
}
run_oha() { # TARGET CONNS SECONDS OUTFILE
  local args=(-z "$3"s -c "$2" -w --no-tui --output-format json -m POST
    -H 'content-type: application/json' -d "$CHAT_BODY")
  [ -z "${AUTH[$1]}" ] || args+=(-H "authorization: ${AUTH[$1]}")
  oha "${args[@]}" "${URL[$1]}" >"$4" 2>"$WORK/oha.err" ||
    { cat "$WORK/oha.err" >&2; die "oha failed for $1 at c=$2"; }
}
us() { jq -r ".latencyPercentiles.$1 * 1e6 | floor" "$2"; }

declare -A RPS P50 P90 P99 MAX DONE FAILED WCPU UCPU OTHER STEAL CALLS WROWS RROWS LEASED FAST
# The Worker's own counts (GET /admin/v1/metrics, per isolate: the Worker and its
# Durable Objects share one here): object calls, rows written and read, leased, and
# answered by the entry's common case.
counts() { # BASE_URL
  admin_get "$1" /admin/v1/metrics |
    jq -r '"\(.object_calls) \(.rows_written) \(.rows_read) \(.leased_admissions) \(.fast_path)"'
}

# ---------------------------------------------------------------- non-streamed load
# A point during which other processes used more than MAX_OTHER % of a CPU (someone
# else building, say) is measured again, up to RETRIES times; the least disturbed
# attempt is kept, and the report shows how disturbed it was.
measure() { # TARGET CONNS: one measured run; sets the m_* variables
  local t=$1 c=$2 w0 w1 u0 u1 r=$WORK/run.json n0=(0 0 0 0 0) n1=(0 0 0 0 0)
  [ -z "${BASE[$t]:-}" ] || read -r -a n0 <<<"$(counts "${BASE[$t]}")"
  w0=$(proc_ticks "$WORKERD_PID")
  u0=$(proc_ticks "$UPSTREAM_PID")
  others_snapshot >"$WORK/others0"
  local st0 st1
  st0=$(steal_ticks)
  run_oha "$t" "$c" "$SECONDS_PER_POINT" "$r"
  others_snapshot >"$WORK/others1"
  st1=$(steal_ticks)
  w1=$(proc_ticks "$WORKERD_PID")
  u1=$(proc_ticks "$UPSTREAM_PID")
  [ -z "${BASE[$t]:-}" ] || read -r -a n1 <<<"$(counts "${BASE[$t]}")"
  m_done=$(jq '[.statusCodeDistribution[]] | add // 0' "$r")
  m_failed=$(jq '([.statusCodeDistribution | to_entries[] | select(.key != "200") | .value] | add // 0)
    + ([.errorDistribution[]] | add // 0)' "$r")
  m_rps=$(jq '.summary.requestsPerSec | round' "$r")
  m_p50=$(us p50 "$r")
  m_p90=$(us p90 "$r")
  m_p99=$(us p99 "$r")
  m_max=$(jq -r '.summary.slowest * 1e6 | floor' "$r")
  local secs
  secs=$(jq '.summary.total' "$r")
  # CPU per request in microseconds (clock-tick resolution over the whole run), and
  # the CPU that processes other than workerd, the upstream and oha used meanwhile.
  m_wcpu=$(awk -v d=$((w1 - w0)) -v n="$m_done" -v hz="$HZ" 'BEGIN { printf "%.0f", d / hz * 1e6 / n }')
  m_ucpu=$(awk -v d=$((u1 - u0)) -v n="$m_done" -v hz="$HZ" 'BEGIN { printf "%.0f", d / hz * 1e6 / n }')
  m_other=$(awk -v d="$(others_ticks "$WORK/others0" "$WORK/others1")" -v s="$secs" -v hz="$HZ" \
    -v cap="$(nproc)" 'BEGIN { v = d / hz / s * 100; if (v > cap * 100) v = cap * 100; printf "%.0f", v }')
  m_steal=$(awk -v d=$((st1 - st0)) -v s="$secs" -v hz="$HZ" 'BEGIN { printf "%.0f", d / hz / s * 100 }')
  # Per request; the metrics read itself is one object-free admin call, not counted.
  per() { awk -v d="$1" -v n="$m_done" 'BEGIN { printf "%.4f", (n > 0) ? d / n : 0 }'; }
  m_calls=$(per $((n1[0] - n0[0])))
  m_wrows=$(per $((n1[1] - n0[1])))
  m_rrows=$(per $((n1[2] - n0[2])))
  m_leased=$(per $((n1[3] - n0[3])))
  m_fast=$(per $((n1[4] - n0[4])))
}
declare -A TRIES ROUND_P50
# Targets are measured in interleaved rounds (every target once per round), and each
# target's round with the median p50 is kept: a burst of noise on this shared machine
# then moves one round of one target, not the ratio between targets.
keep_median_round() { # TARGET CONNS: copies the median round's figures to TARGET/CONNS
  local t=$1 c=$2 r mid picked v
  mapfile -t picked < <(for ((r = 1; r <= ROUNDS; r++)); do
    [ -z "${P50[$t/$c/$r]:-}" ] || echo "${P50[$t/$c/$r]} $r"
  done | sort -n)
  [ "${#picked[@]}" -gt 0 ] || return 0
  mid=${picked[$(((${#picked[@]} - 1) / 2))]##* }
  for v in DONE FAILED RPS P50 P90 P99 MAX WCPU UCPU OTHER STEAL CALLS WROWS RROWS LEASED FAST TRIES; do
    declare -n arr=$v
    arr[$t/$c]=${arr[$t/$c/$mid]}
  done
  ROUND_P50[$t/$c]=$(for ((r = 1; r <= ROUNDS; r++)); do
    [ -z "${P50[$t/$c/$r]:-}" ] || printf '%s ' "$(ms "${P50[$t/$c/$r]}")"
  done)
}
for c in $CONNS; do
  for ((round = 1; round <= ROUNDS; round++)); do
    for t in "${TARGETS[@]}"; do
      # "near" allows 8 requests at once: measured for latency only, at the first c.
      [ "$t" != metered_near ] || [ "$c" = "${CONNS%% *}" ] || continue
      step "non-streamed chat, $t, c=$c, round $round of $ROUNDS: ${SECONDS_PER_POINT}s measured"
      if [ "$round" = 1 ]; then
        run_oha "$t" "$c" "$WARMUP" "$WORK/warmup.json"
        if [ -n "${BASE[$t]:-}" ]; then
          SENT[$t]=$((${SENT[$t]} + $(jq '[.statusCodeDistribution[]] | add // 0' "$WORK/warmup.json")))
        fi
      fi
      k=$t/$c/$round
      for ((try = 1; try <= RETRIES + 1; try++)); do
        measure "$t" "$c"
        [ -z "${BASE[$t]:-}" ] || SENT[$t]=$((${SENT[$t]} + m_done))
        info "$(printf '%s req/s, p50 %s us, p99 %s us, failed %s, workerd CPU %s us/req, other processes %s%% of a CPU, steal %s%%' \
          "$m_rps" "$m_p50" "$m_p99" "$m_failed" "$m_wcpu" "$m_other" "$m_steal")"
        if [ "$try" = 1 ] || [ "$m_other" -lt "${OTHER[$k]}" ]; then
          DONE[$k]=$m_done FAILED[$k]=$m_failed RPS[$k]=$m_rps P50[$k]=$m_p50 P90[$k]=$m_p90
          P99[$k]=$m_p99 MAX[$k]=$m_max WCPU[$k]=$m_wcpu UCPU[$k]=$m_ucpu OTHER[$k]=$m_other STEAL[$k]=$m_steal
          CALLS[$k]=$m_calls WROWS[$k]=$m_wrows RROWS[$k]=$m_rrows LEASED[$k]=$m_leased FAST[$k]=$m_fast
        fi
        TRIES[$k]=$try
        [ "${OTHER[$k]}" -gt "$MAX_OTHER" ] || break
        [ "$try" -gt "$RETRIES" ] || info "other processes were busy: measuring again"
      done
    done
  done
  for t in "${TARGETS[@]}"; do keep_median_round "$t" "$c"; done
done

# ---------------------------------------------------------------- streamed
. scripts/bench.d/stream.sh

# ---------------------------------------------------------------- hot and cold customers
. scripts/bench.d/hotcold.sh

# ---------------------------------------------------------------- metering check
step "reading the bench customer's usage from each counter"
sleep 1 # settlement runs after the response (waitUntil)
declare -A SETTLED
for t in "${TARGETS[@]}"; do
  [ -n "${BASE[$t]:-}" ] || continue
  usage=$(curl -sS "${BASE[$t]}/v1/usage" -H "authorization: ${AUTH[$t]}")
  SETTLED[$t]=$(jq -r '.totals.requests // empty' <<<"$usage")
  [ -n "${SETTLED[$t]}" ] || die "unexpected /v1/usage answer: $usage"
  info "${LABEL[$t]}: the counter settled ${SETTLED[$t]} requests; the benchmark completed ${SENT[$t]}"
done
WORKERD_ERRORS=$(grep -ci -e error -e exception "$WORK/workerd.log" || true)
V_OHA=$(oha --version)
step "stopping the proxy section's workerd"
stop "$WORKERD_PID"
WORKERD_PID=""

# ---------------------------------------------------------------- profile
. scripts/bench.d/profile.sh


# ---------------------------------------------------------------- report
. scripts/bench.d/proxy_report.sh
