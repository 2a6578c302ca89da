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
first_c=${CONNS%% *}
last_c=${CONNS##* }
PAIRS=("metered bare_js" "bare bare_js" "metered bare")
[ -z "$TMPFS_URL" ] || PAIRS+=("metered_tmpfs bare" "metered metered_tmpfs")
PAIRS+=("metered direct" "bare direct")

# What Cloudflare would bill per million requests of a target at concurrency C, from the
# counts this run measured, at the published rates: Workers $0.30 per million requests and
# $0.02 per million CPU-ms; Durable Objects $0.15 per million requests and $12.50 per
# million GB-s, taken as 128 MB for 2 ms per object request (an assumption: this bench
# cannot see billed duration); SQLite $1.00 per million rows written, $0.001 per million read.
# The CPU is all of workerd's, Durable Objects included, so it is counted twice over.
cost() { # TARGET C
  local k=$1/$2
  awk -v cpu="${WCPU[$k]}" -v calls="${CALLS[$k]:-0}" -v w="${WROWS[$k]:-0}" -v r="${RROWS[$k]:-0}" \
    'BEGIN { printf "%.3f", 0.30 + 0.02 * cpu / 1000 + 0.15 * calls + 12.50 * calls * 0.128 * 0.002 + 1.00 * w + 0.001 * r }'
}

# One target's p50 over another's, judged as the median of the rounds' own ratios: the
# two were measured one after the other in each round, so a burst of steal that slows
# one round moves both. Prints "MEDIAN LIST" (LIST: every round's ratio, comma separated).
round_ratios() { # TARGET OVER C
  local r list=""
  for ((r = 1; r <= ROUNDS; r++)); do
    [ -n "${P50[$1/$3/$r]:-}" ] && [ -n "${P50[$2/$3/$r]:-}" ] || continue
    list+="$(awk -v a="${P50[$1/$3/$r]}" -v b="${P50[$2/$3/$r]}" 'BEGIN { printf "%.2f", a / b }') "
  done
  printf '%s %s\n' "$(echo $list | tr ' ' '\n' | median)" "$(echo $list | sed 's/ /, /g')"
}
p50_target() { # TARGET OVER WHAT: one target row on the rounds' ratios
  local m rest
  read -r m rest < <(round_ratios "$1" "$2" "$first_c")
  echo "| $3 | ${m}× (median of the rounds' ratios: $rest; median rounds $(ms "${P50[$1/$first_c]}") vs $(ms "${P50[$2/$first_c]}") ms) | $(verdict "$m" 1.3) |"
}
proxy_targets() {
  local r
  p50_target metered bare_js "metered p50 ≤ 1.3× a bare JavaScript pass-through Worker (c=$first_c, non-streamed)"
  p50_target metered bare "metered p50 ≤ 1.3× edgemeter's bare wasm route (c=$first_c, non-streamed)"
  [ -z "$TMPFS_URL" ] || p50_target metered_tmpfs bare "the same, Durable Object storage on tmpfs"
  local c
  for c in $CONNS; do
    echo "| at most 0.1 Durable Object calls per metered request (c=$c, warm lease) | ${CALLS[metered/$c]} | $(verdict "${CALLS[metered/$c]}" 0.1) |"
  done
  stream_target
  local m b
  m=$(cost metered "$first_c")
  b=$(cost bare_js "$first_c")
  r=$(awk -v a="$m" -v b="$b" 'BEGIN { printf "%.2f", a / b }')
  echo "| cost per million metered requests ≤ 2× a bare Worker's (c=$first_c) | ${r}× (\$$m vs \$$b) | $(verdict "$r" 2) |"
  hotcold_targets
  r=$(awk -v a="${WCPU[metered/$first_c]}" -v b="${WCPU[bare_js/$first_c]}" 'BEGIN { printf "%.2f", a / b }')
  echo "| stretch: metered CPU ≤ 2× a bare JavaScript Worker's (c=$first_c) | ${r}× (${WCPU[metered/$first_c]} vs ${WCPU[bare_js/$first_c]} µs) | $(verdict "$r" 2) |"
}


proxy_report() {
  local c t k cpu pair a b
  echo "## Proxy path"
  echo
  echo "What was measured, all against the same local fake upstream:"
  echo
  echo "- **direct**: \`POST /v1/chat/completions\` to the upstream itself."
  echo "- **bare JS**: a JavaScript Worker of a dozen lines (\`scripts/bench.d/workerd_config.py\`)"
  echo "  in the same workerd process, forwarding each request to the upstream: the least any"
  echo "  Worker in front of the provider costs."
  echo "- **bare**: edgemeter's bare pass-through route, \`POST /bare/v1/chat/completions\`"
  echo "  (enabled by \`BENCH_BARE_ROUTE\`): reads the body and forwards it, no metering."
  echo "- **metered**: the metered proxy path, \`POST /v1/chat/completions\` with a live key."
  echo "  The customer's \`UsageCounter\` Durable Object keeps SQLite on local disk"
  echo "  ($DO_FS), which workerd flushes to disk (fsync) as Durable Object writes commit."
  if [ -n "$TMPFS_URL" ]; then
    echo "- **metered, DO on tmpfs**: the same path on a second copy of the Worker (same"
    echo "  workerd process) whose Durable Object storage is on tmpfs, so no disk flush: the"
    echo "  difference to *metered* is the cost of the flushes."
  fi
  echo
  echo "### Non-streamed chat completion"
  echo
  echo "\`POST …/v1/chat/completions\` (gpt-4o-mini, 50 completion tokens answered at once by the upstream),"
  echo "after a ${WARMUP} s warm-up, in $ROUNDS interleaved rounds of ${SECONDS_PER_POINT} s per target (every"
  echo "target once per round); each target's round with the median p50 is shown, and"
  echo "*p50 per round* lists all of them. Latencies in ms."
  echo "*workerd CPU* is the workerd process's CPU time per request (for *direct*: the"
  echo "upstream's). *Others* is the CPU time that every other process on the machine"
  echo "(not workerd, the upstream or oha) used meanwhile, in % of one CPU (roughly: a"
  echo "process that ends adds its whole CPU time to its parent's): high values"
  echo "mean the point was disturbed by other work (kernel threads, such as the ones that"
  echo "write the ext4 journal after the metered path's flushes, count here too). A point"
  echo "with others above $MAX_OTHER% was measured again, up to $((RETRIES + 1)) runs in all (*runs*),"
  echo "and the least disturbed run is shown. *Steal* is the time the host ran something"
  echo "else while this VM's CPUs were ready (from /proc/stat), in % of one CPU: it slows"
  echo "every process here at once, and no retry is made for it."
  echo
  echo "| c | target | req/s | p50 | p90 | p99 | max | requests | failed | workerd CPU µs/req | others | steal | runs | p50 per round |"
  echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  for c in $CONNS; do
    for t in "${TARGETS[@]}"; do
      k=$t/$c
      [ -n "${DONE[$k]:-}" ] || continue
      cpu=${WCPU[$k]}
      [ "$t" != direct ] || cpu="${UCPU[$k]} (upstream)"
      echo "| $c | ${LABEL[$t]} | ${RPS[$k]} | $(ms "${P50[$k]}") | $(ms "${P90[$k]}") | $(ms "${P99[$k]}") | $(ms "${MAX[$k]}") | ${DONE[$k]} | ${FAILED[$k]} | $cpu | ${OTHER[$k]}% | ${STEAL[$k]}% | ${TRIES[$k]} | ${ROUND_P50[$k]:-} |"
    done
  done
  echo
  echo "Ratios (first ÷ second target at the same concurrency; for req/s below 1× means"
  echo "fewer requests per second), and the p50 difference in ms:"
  echo
  echo "| c | comparison | req/s | p50 | p90 | p99 | p50 difference |"
  echo "|---:|---|---:|---:|---:|---:|---:|"
  for c in $CONNS; do
    for pair in "${PAIRS[@]}"; do
      read -r a b <<<"$pair"
      echo "| $c | ${LABEL[$a]} ÷ ${LABEL[$b]} | $(ratio "${RPS[$a/$c]}" "${RPS[$b/$c]}") | $(ratio "${P50[$a/$c]}" "${P50[$b/$c]}") | $(ratio "${P90[$a/$c]}" "${P90[$b/$c]}") | $(ratio "${P99[$a/$c]}" "${P99[$b/$c]}") | $(plus_ms "${P50[$a/$c]}" "${P50[$b/$c]}") |"
    done
  done
  echo
  echo "### Durable Object calls, SQLite rows and cost"
  echo
  echo "Counted by the Worker itself (\`GET /admin/v1/metrics\` before and after each measured"
  echo "run; the Worker and its Durable Objects share one isolate here), per request:"
  echo "object calls (Worker to object, object to object, and alarms), rows written and read"
  echo "(the SQL cursors' counts), requests admitted under a lease with no call, and"
  echo "*common case*: requests the Worker's JavaScript entry drove itself (\`src/entry.mjs\`;"
  echo "the others went through the wasm's fetch handler). *Cost* is"
  echo "what Cloudflare would bill per million such requests at its published rates (Workers"
  echo "\$0.30/M requests and \$0.02/M CPU-ms; Durable Objects \$0.15/M requests and \$12.50/M"
  echo "GB-s, taken as 128 MB for 2 ms per object request; SQLite \$1.00/M rows written and"
  echo "\$0.001/M rows read), with the CPU column above as the CPU."
  echo
  echo "| c | target | object calls | rows written | rows read | leased | common case | workerd CPU µs/req | cost per million |"
  echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|"
  for c in $CONNS; do
    for t in "${TARGETS[@]}"; do
      [ "$t" != direct ] && [ -n "${DONE[$t/$c]:-}" ] || continue
      echo "| $c | ${LABEL[$t]} | ${CALLS[$t/$c]:-0} | ${WROWS[$t/$c]:-0} | ${RROWS[$t/$c]:-0} | ${LEASED[$t/$c]:-0} | ${FAST[$t/$c]:-0} | ${WCPU[$t/$c]} | \$$(cost "$t" "$c") |"
    done
  done
  echo
  stream_report
  hotcold_report
  profile_report
  echo "### Metering check"
  echo
  echo "After the run, requests that each bench customer's counter had settled"
  echo "(\`GET /v1/usage\`) against metered requests the benchmark completed:"
  echo
  for t in "${TARGETS[@]}"; do
    [ -n "${BASE[$t]:-}" ] || continue
    echo "- ${LABEL[$t]}: ${SETTLED[$t]} settled, ${SENT[$t]} completed"
  done
  echo
  echo "Lines mentioning an error or exception in the workerd log: $WORKERD_ERRORS."
  echo
}

proxy_how() {
  echo "- Proxy: the \`UsageCounter\` Durable Object keeps SQLite in a fresh directory ($DO_FS;"
  echo "  and tmpfs for the second Worker copy, if the machine has /dev/shm). The overrides"
  echo "  are the fake upstream as \`UPSTREAM_URL\` and \`BENCH_BARE_ROUTE = \"1\"\`."
  echo "- Upstream: \`target/release/examples/fake_upstream\` (tests/support),"
  echo "  HTTP/1.1 with keep-alive on 127.0.0.1, answering at once with deterministic usage."
  echo "  All targets use the same upstream process in the same run."
  echo "- The proxy's bench customer is on the plan \`bench\` with one live key."
  echo "- Non-streamed load: \`oha -z ${SECONDS_PER_POINT}s -c C -w\`, closed loop (each connection"
  echo "  sends its next request when the previous answer arrives), keep-alive; percentiles"
  echo "  are of the raw per-request latencies, without coordinated-omission correction"
  echo "  (wrk's built-in percentiles include it, which turns a single 50 ms pause into"
  echo "  hundreds of synthetic slow samples at c=1). c=$first_c measures latency,"
  echo "  c=$last_c throughput. oha, workerd and the upstream share the machine's $NPROC CPUs."
  echo "- Streamed: one \`curl -K\` process per target and round, sending its requests one after another."
  echo "- *metered* admits under the isolate's quota lease, with no Durable Object call on"
  echo "  the request's path; what it used is reported in batches from \`waitUntil\`."
  echo "  *metered, per request* (plan \`near\`, too tight to lease) makes one round trip"
  echo "  before forwarding (admission) and one after the response (settlement). The bare"
  echo "  route makes none."
}

proxy_summary() {
  sed -n '/^| c | target/,/^$/p' "$OUT"
  sed -n '/^| c | comparison/,/^$/p' "$OUT"
}
