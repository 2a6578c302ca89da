# Sourced by proxy.sh once its measurements are in: the proxy section's targets, report,
# notes on how it was measured, and summary.
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

p50_target() { # TARGET OVER WHAT: one target row on the rounds' ratios
  local m rest
  read -r m rest < <(by_round P50 "$1/$first_c" "$2/$first_c" ratio)
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
