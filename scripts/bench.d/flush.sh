# The flush section of scripts/bench, sourced by it at the top level: it uses the
# script's helpers and variables, and its own variables stay visible to the report.
#
# A fresh workerd flushes to the fake rating receiver (tests/support/fake_receiver.rs,
# which verifies signatures and dedupes by record id). For each size in
# BENCH_FLUSH_CUSTOMERS (ascending) the customers are made dirty (new ones created, each
# with a live key and one metered request; those flushed before get one more request),
# then POST /admin/v1/flush/run (what the cron runs) is called until
# GET /admin/v1/flush shows no pending customer, each run bounded by BENCH_FLUSH_RUN_S.

FLUSH_SHARDS=$(sed -n 's/^FLUSH_SHARDS *= *"\([0-9]*\)".*/\1/p' wrangler.toml | head -n 1)
FLUSH_SHARDS=${FLUSH_SHARDS:-16}
FLUSH_BATCH=$(sed -n 's/^FLUSH_BATCH_RECORDS *= *"\([0-9]*\)".*/\1/p' wrangler.toml | head -n 1)
FLUSH_BATCH=${FLUSH_BATCH:-500}
# What one shard takes per run: MAX_CUSTOMERS_PER_RUN in src/edge/flush_shard.rs, or
# the README's 400 if that constant is not found.
FLUSH_PER_SHARD=$(sed -n 's/^const MAX_CUSTOMERS_PER_RUN: [a-z0-9]* = \([0-9_]*\);.*/\1/p' src/edge/flush_shard.rs | tr -d _)
FLUSH_PER_SHARD=${FLUSH_PER_SHARD:-400}
FLUSH_PER_RUN=$((FLUSH_SHARDS * FLUSH_PER_SHARD))
RATING_SECRET=whsec_bench_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')

step "flush: starting the fake rating receiver and a fresh workerd that flushes to it"
: >"$WORK/receiver.port"
"$RECEIVER_BIN" 0 "$RATING_SECRET" >"$WORK/receiver.port" 2>"$WORK/receiver.log" &
RECEIVER_PID=$!
for _ in $(seq 100); do
  [ -s "$WORK/receiver.port" ] && break
  sleep 0.1
done
RECEIVER_URL=http://127.0.0.1:$(head -n 1 "$WORK/receiver.port")
[ "$RECEIVER_URL" != http://127.0.0.1: ] || die "the fake receiver did not report its port"
start_flush_worker() { # NAME: (re)starts the flush section's workerd on the same storage
  start_worker "$1" "$WORK/do-flush" "UPSTREAM_URL=$UPSTREAM_URL" \
    "RATING_URL=$RECEIVER_URL/ingest" "RATING_SECRET=$RATING_SECRET" RATING_FORMAT=native \
    "FLUSH_SHARDS=$FLUSH_SHARDS" "FLUSH_BATCH_RECORDS=$FLUSH_BATCH" FLUSH_BACKOFF_MS=0
  FLUSH_URL=$SECTION_URL
}
start_flush_worker flush-setup
info "receiver on $RECEIVER_URL (pid $RECEIVER_PID); workerd on $FLUSH_URL (pid $SECTION_PID)," \
  "$FLUSH_SHARDS shards, batches of at most $FLUSH_BATCH records"

# The flush stats' overall part; pending_customers is -1 when the stats could not be
# read or a shard answered with an error (its pending customers would be missing).
flush_overall() {
  curl -sS --max-time 30 "$FLUSH_URL/admin/v1/flush" -H "authorization: Bearer $ADMIN_TOKEN" 2>/dev/null |
    jq -c '.overall + (if ([.shards[] | select(.error)] | length) > 0 then {pending_customers: -1} else {} end)' 2>/dev/null ||
    echo '{"pending_customers":-1,"batches_sent":0,"records_sent":0}'
}
receiver_stats() { curl -sS --max-time 10 "$RECEIVER_URL/stats"; }
log_count() { # PATTERN FROM_LINE: lines matching PATTERN in the workerd log after FROM_LINE
  tail -n +"$(($2 + 1))" "$WORKERD_LOG" | grep -c -- "$1" || true
}

declare -A F_SETUP_MS F_NEW F_REMETER F_SETUP_FAILED F_SETUP_ERROR F_DIRTY
declare -A F_RUNS F_RUN_MS F_MS F_TAKEN F_CLEANED F_SENT_BATCHES F_SENT_RECORDS F_PENDING
declare -A F_RECV_BATCHES F_RECV_RECORDS F_RECV_DUPES F_RECV_BAD F_TIMEOUTS F_ERROR
declare -A F_PAUSES F_RSS0 F_HWM F_HWM_SCOPE F_NOMEM F_REINIT F_PANIC F_NEVER F_SCHEMA
FLUSH_SIZES=()
FLUSH_SKIPPED=""
have=0
: >"$WORK/keys.tsv"
for n in $FLUSH_CUSTOMERS; do
  [ "$n" -gt "$have" ] || die "BENCH_FLUSH_CUSTOMERS must be ascending"
  if [ -n "$FLUSH_SKIPPED" ]; then
    FLUSH_SKIPPED+=" $n"
    continue
  fi
  FLUSH_SIZES+=("$n")
  new=$((n - have))
  step "flush, $n dirty customers: creating $new customers (a live key and one metered request each)$([ "$have" -eq 0 ] || echo ", one more request for each of the $have flushed before")"
  t0=$(now_ms)
  F_REMETER[$n]=0
  F_SETUP_FAILED[$n]=0
  F_SETUP_ERROR[$n]=""
  if [ "$have" -gt 0 ]; then
    python3 scripts/bench.d/customers.py meter --url "$FLUSH_URL" --keys "$WORK/keys.tsv" \
      --deadline-s 120 >"$WORK/meter.json"
    F_REMETER[$n]=$(jq .done "$WORK/meter.json")
    F_SETUP_FAILED[$n]=$(jq .failed "$WORK/meter.json")
    F_SETUP_ERROR[$n]=$(jq -r '.first_error // ""' "$WORK/meter.json")
  fi
  python3 scripts/bench.d/customers.py create --url "$FLUSH_URL" --token "$ADMIN_TOKEN" \
    --plan bench --prefix flush- --first "$have" --count "$new" --keys-out "$WORK/new.tsv" \
    --deadline-s 240 >"$WORK/create.json"
  cat "$WORK/new.tsv" >>"$WORK/keys.tsv"
  F_NEW[$n]=$(jq .done "$WORK/create.json")
  F_SETUP_FAILED[$n]=$((F_SETUP_FAILED[$n] + $(jq .failed "$WORK/create.json")))
  [ -n "${F_SETUP_ERROR[$n]}" ] || F_SETUP_ERROR[$n]=$(jq -r '.first_error // ""' "$WORK/create.json")
  F_SETUP_MS[$n]=$(($(now_ms) - t0))
  have=$n
  info "set up in $(ms "${F_SETUP_MS[$n]}") s: ${F_NEW[$n]} created, ${F_REMETER[$n]} metered again, ${F_SETUP_FAILED[$n]} failed${F_SETUP_ERROR[$n]:+ (first: ${F_SETUP_ERROR[$n]})}"

  # Settlement (and with it the dirty mark) runs after the response, in waitUntil.
  expect=$((F_NEW[$n] + F_REMETER[$n]))
  for _ in $(seq 50); do
    F_DIRTY[$n]=$(flush_overall | jq .pending_customers)
    [ "${F_DIRTY[$n]}" -lt "$expect" ] || break
    sleep 0.2
  done
  # The flush gets a fresh workerd process on the same storage: its memory is then the
  # flush's own (the allocator keeps what the set-up used), and it finds every counter
  # idle on disk, as a cron finds most of them.
  info "${F_DIRTY[$n]} customers pending; restarting workerd on the same storage for the flush"
  stop "$SECTION_PID"
  SECTION_PID=""
  start_flush_worker "flush-$n"

  # The flush: runs back to back until nothing is pending, each bounded by a cron
  # minute; no run starts after FLUSH_BUDGET_S.
  recv0=$(receiver_stats)
  stats0=$(flush_overall)
  log0=$(wc -l <"$WORKERD_LOG")
  F_RSS0[$n]=$(proc_kib "$SECTION_PID" VmRSS)
  F_HWM_SCOPE[$n]=$(reset_peak "$SECTION_PID")
  F_RUNS[$n]=0 F_RUN_MS[$n]="" F_TAKEN[$n]=0 F_CLEANED[$n]=0 F_TIMEOUTS[$n]=0 F_ERROR[$n]="" F_PAUSES[$n]=0
  F_PENDING[$n]=${F_DIRTY[$n]}
  step "flush, $n dirty customers: POST /admin/v1/flush/run until none is pending (each run at most ${FLUSH_RUN_S} s)"
  t0=$(now_ms)
  for run in $(seq 10); do
    [ "$run" -eq 1 ] || [ $(($(now_ms) - t0)) -lt $((FLUSH_BUDGET_S * 1000)) ] || break
    r0=$(now_ms)
    : >"$WORK/run.json"
    if code=$(curl -sS --max-time "$FLUSH_RUN_S" -X POST "$FLUSH_URL/admin/v1/flush/run" \
      -H "authorization: Bearer $ADMIN_TOKEN" -o "$WORK/run.json" -w '%{http_code}' 2>"$WORK/run.err"); then
      [ "$code" = 200 ] || F_ERROR[$n]=${F_ERROR[$n]:-"flush/run answered $code: $(head -c 300 "$WORK/run.json")"}
    else
      F_TIMEOUTS[$n]=$((F_TIMEOUTS[$n] + 1))
      F_ERROR[$n]=${F_ERROR[$n]:-"no answer to POST /admin/v1/flush/run within ${FLUSH_RUN_S} s"}
    fi
    r1=$(now_ms)
    F_RUNS[$n]=$run
    F_RUN_MS[$n]+="${F_RUN_MS[$n]:+ }$((r1 - r0))"
    # Per shard: customers taken, batches and records sent, customers clean, error.
    summary=$(jq -r '[([.shards[] | .customers // 0] | add // 0),
      ([.shards[] | .batches // 0] | add // 0), ([.shards[] | .records // 0] | add // 0),
      ([.shards[] | .cleaned // 0] | add // 0),
      ([.shards[] | (.error // .skipped // empty) | tostring] | first // "-" | gsub("\\s+"; " "))] | @tsv' \
      "$WORK/run.json" 2>/dev/null) || true
    read -r taken batches records cleaned err <<<"${summary:-0 0 0 0 -}"
    F_TAKEN[$n]=$((F_TAKEN[$n] + taken))
    F_CLEANED[$n]=$((F_CLEANED[$n] + cleaned))
    [ "$err" = - ] || F_ERROR[$n]=${F_ERROR[$n]:-"a shard reported: $err"}
    F_PENDING[$n]=$(flush_overall | jq .pending_customers)
    info "run $run: $(ms $((r1 - r0))) s; took $taken customers, sent $batches batches with $records records, $cleaned clean; ${F_PENDING[$n]/#-1/unknown} pending$([ "$err" = - ] || echo "; a shard: ${err:0:200}")"
    [ "${F_PENDING[$n]}" -ne 0 ] || break
    # After a run that cleaned nobody, give workerd time to close the counters that run
    # opened (it closes an idle Durable Object after some seconds; a cron would wait a
    # whole minute) before trying again.
    if [ "$cleaned" -eq 0 ] && [ $(($(now_ms) - t0 + FLUSH_PAUSE_S * 1000)) -lt $((FLUSH_BUDGET_S * 1000)) ]; then
      info "nobody clean: pausing ${FLUSH_PAUSE_S} s before the next run"
      sleep "$FLUSH_PAUSE_S"
      F_PAUSES[$n]=$((F_PAUSES[$n] + 1))
    fi
  done
  F_MS[$n]=$(($(now_ms) - t0))
  F_HWM[$n]=$(proc_kib "$SECTION_PID" VmHWM)
  recv1=$(receiver_stats)
  stats1=$(flush_overall)
  F_RECV_BATCHES[$n]=$(($(jq .batches <<<"$recv1") - $(jq .batches <<<"$recv0")))
  F_RECV_RECORDS[$n]=$(($(jq .records <<<"$recv1") - $(jq .records <<<"$recv0")))
  F_RECV_DUPES[$n]=$(($(jq .duplicates <<<"$recv1") - $(jq .duplicates <<<"$recv0")))
  F_RECV_BAD[$n]=$(($(jq .bad_signatures <<<"$recv1") - $(jq .bad_signatures <<<"$recv0")))
  if [ "$(jq .pending_customers <<<"$stats1")" -ge 0 ] && [ "$(jq .pending_customers <<<"$stats0")" -ge 0 ]; then
    F_SENT_BATCHES[$n]=$(($(jq .batches_sent <<<"$stats1") - $(jq .batches_sent <<<"$stats0")))
    F_SENT_RECORDS[$n]=$(($(jq .records_sent <<<"$stats1") - $(jq .records_sent <<<"$stats0")))
  else
    # A shard could not report: its counters are missing from the sums.
    F_SENT_BATCHES[$n]=unknown F_SENT_RECORDS[$n]=unknown
  fi
  F_NOMEM[$n]=$(log_count SQLITE_NOMEM "$log0")
  F_REINIT[$n]=$(log_count 'Reinitializing Wasm application' "$log0")
  F_PANIC[$n]=$(log_count 'Rust panic' "$log0")
  F_NEVER[$n]=$(log_count 'Promise will never complete' "$log0")
  F_SCHEMA[$n]=$(log_count 'counter schema' "$log0")
  info "$(ms "${F_MS[$n]}") s in ${F_RUNS[$n]} run(s); receiver: ${F_RECV_BATCHES[$n]} batches, ${F_RECV_RECORDS[$n]} records;" \
    "workerd RSS $(mib "${F_RSS0[$n]}") MiB before, peak $(mib "${F_HWM[$n]}") MiB"
  if [ "${F_NOMEM[$n]}${F_REINIT[$n]}" != 00 ]; then
    info "workerd log: ${F_NOMEM[$n]} lines with SQLITE_NOMEM, ${F_PANIC[$n]} Rust panics, ${F_REINIT[$n]} Wasm reinitializations"
  fi
  if [ "${F_PENDING[$n]}" -ne 0 ]; then
    # What a failed size leaves behind (frozen records, a reinitialized isolate) would
    # distort any larger size.
    FLUSH_SKIPPED=" "
  fi
done
FLUSH_SKIPPED=${FLUSH_SKIPPED# }
step "stopping the flush section's workerd and the receiver"
stop "$SECTION_PID"
SECTION_PID=""
stop "$RECEIVER_PID"
RECEIVER_PID=""

# ---------------------------------------------------------------- report
flush_rate() { # COUNT MS: per second
  awk -v n="$1" -v t="$2" 'BEGIN { if (t > 0) printf "%.0f", n / (t / 1000); else print "n/a" }'
}
flush_done() { [ "${F_PENDING[$1]}" -eq 0 ]; }

flush_targets() {
  local n=10000 runs measured result
  if [ -z "${F_RUNS[$n]:-}" ]; then
    echo "| 10k dirty customers flushed within one cron minute | not measured (BENCH_FLUSH_CUSTOMERS has no 10000$([ -z "$FLUSH_SKIPPED" ] || echo ", or a smaller size failed")) | n/a |"
    return
  fi
  runs=${F_RUNS[$n]}
  if flush_done "$n"; then
    measured="$(ms "${F_MS[$n]}") s in $runs run(s) back to back"
    if [ "$runs" -eq 1 ] && [ "${F_MS[$n]}" -le 60000 ]; then result="**met**"; else result="**missed**"; fi
    [ "$runs" -eq 1 ] || measured+="; under the cron, run $runs starts $((runs - 1)) minute(s) after the first"
  else
    measured="not finished: ${F_PENDING[$n]/#-1/an unknown number} of ${F_DIRTY[$n]} still pending after $runs run(s) ($(ms "${F_MS[$n]}") s)"
    result="**missed**"
  fi
  echo "| 10k dirty customers flushed within one cron minute ($FLUSH_SHARDS shards) | $measured | $result |"
}

flush_notes() { :; }

flush_report() {
  local n runs
  echo "## Cron flush"
  echo
  echo "A fresh workerd flushing to the fake rating receiver (\`RATING_URL\`, native format,"
  echo "\`FLUSH_SHARDS = $FLUSH_SHARDS\`, \`FLUSH_BATCH_RECORDS = $FLUSH_BATCH\` as in wrangler.toml,"
  echo "\`FLUSH_BACKOFF_MS = 0\`). Each size adds customers to the previous one: new customers"
  echo "get a live key and one metered chat completion (which marks them dirty), those"
  echo "flushed before get one more request. Then \`POST /admin/v1/flush/run\` (what the cron"
  echo "runs: every shard at once) is called back to back until \`GET /admin/v1/flush\` shows"
  echo "no pending customer; each run may take at most ${FLUSH_RUN_S} s (a cron minute), a run that"
  echo "cleaned nobody is followed by a ${FLUSH_PAUSE_S} s pause (workerd closes Durable Objects that"
  echo "have been idle some seconds; the cron would wait a minute), and no run starts after"
  echo "${FLUSH_BUDGET_S} s. A shard takes at most $FLUSH_PER_SHARD dirty customers per run, so one"
  echo "run flushes at most $FLUSH_PER_RUN customers. *Flush time* runs from the first run's start to"
  echo "the \`GET /admin/v1/flush\` that showed nothing pending. One metered request per"
  echo "customer makes one record per customer."
  echo
  echo "| dirty customers | set-up | flush runs | run times (s) | flush time (s) | customers/s | records/s | batches sent | records sent | pending after |"
  echo "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"
  for n in "${FLUSH_SIZES[@]}"; do
    echo "| ${F_DIRTY[$n]} | $(ms "${F_SETUP_MS[$n]}") s | ${F_RUNS[$n]} | $(for r in ${F_RUN_MS[$n]}; do printf '%s ' "$(ms "$r")"; done | sed 's/ $//; s/ /, /g') | $(ms "${F_MS[$n]}") | $(flush_done "$n" && flush_rate "${F_CLEANED[$n]}" "${F_MS[$n]}" || echo n/a) | $(flush_done "$n" && flush_rate "${F_RECV_RECORDS[$n]}" "${F_MS[$n]}" || echo n/a) | ${F_SENT_BATCHES[$n]} | ${F_SENT_RECORDS[$n]} | ${F_PENDING[$n]/#-1/unknown} |"
  done
  for n in $FLUSH_SKIPPED; do
    echo "| $n | not measured: the previous size did not finish | | | | | | | | |"
  done
  echo
  echo "*Customers/s* counts customers whose counters reported clean after the"
  echo "acknowledgement; *records/s* the records the receiver stored. *Batches sent* and"
  echo "*records sent* are the flush's own counters (\`overall.batches_sent\`,"
  echo "\`records_sent\`; unknown when a shard could not report them); the receiver's view"
  echo "of the same runs:"
  echo
  echo "| dirty customers | receiver batches | receiver records (new ids) | duplicates | bad signatures | set-up failures |"
  echo "|---:|---:|---:|---:|---:|---:|"
  for n in "${FLUSH_SIZES[@]}"; do
    echo "| ${F_DIRTY[$n]} | ${F_RECV_BATCHES[$n]} | ${F_RECV_RECORDS[$n]} | ${F_RECV_DUPES[$n]} | ${F_RECV_BAD[$n]} | ${F_SETUP_FAILED[$n]} |"
  done
  echo
  echo "Memory of the workerd process that ran the flush (all of the Worker's isolates and"
  echo "Durable Objects live in it; it was started on the set-up's storage right before the"
  echo "flush, so every counter starts closed on disk, as a cron finds most of them). *Peak*"
  echo "is VmHWM from /proc, reset (\`echo 5 > clear_refs\`) just before the first run, so it"
  echo "is the flush's own peak unless the column says \"process\". The workerd log columns"
  echo "count lines of that process's log."
  echo
  echo "| dirty customers | RSS before the flush | peak during the flush | peak covers | (peak − before) ÷ customers | SQLITE_NOMEM lines | Rust panics | Wasm reinitializations | \"Promise will never complete\" |"
  echo "|---:|---:|---:|---|---:|---:|---:|---:|---:|"
  for n in "${FLUSH_SIZES[@]}"; do
    echo "| ${F_DIRTY[$n]} | $(mib "${F_RSS0[$n]}") MiB | $(mib "${F_HWM[$n]}") MiB | ${F_HWM_SCOPE[$n]} | $(flush_done "$n" && awk -v a="${F_HWM[$n]}" -v b="${F_RSS0[$n]}" -v n="${F_DIRTY[$n]}" 'BEGIN { printf "%.0f KiB", (a - b) / n }' || echo "n/a (did not finish)") | ${F_NOMEM[$n]} | ${F_PANIC[$n]} | ${F_REINIT[$n]} | ${F_NEVER[$n]} |"
  done
  echo
  flush_findings
}

# Notes that follow from the numbers above; each one only when the run showed it.
flush_findings() {
  local n big="" failed=""
  for n in "${FLUSH_SIZES[@]}"; do
    [ "${F_DIRTY[$n]}" -le $FLUSH_PER_RUN ] || big=$n
    flush_done "$n" || failed=$n
  done
  if [ -n "$big" ]; then
    echo "- **One run cannot take $big customers.** $FLUSH_SHARDS shards × $FLUSH_PER_SHARD customers per run is"
    echo "  $FLUSH_PER_RUN per cron run, and customers spread over the shards by hash, so"
    echo "  $big dirty customers need at least $(((big + FLUSH_PER_RUN - 1) / FLUSH_PER_RUN)) runs: under the cron, run $(((big + FLUSH_PER_RUN - 1) / FLUSH_PER_RUN)) starts"
    echo "  $(((big + FLUSH_PER_RUN - 1) / FLUSH_PER_RUN - 1)) minute(s) after the first, however fast each run is."
  fi
  if [ -n "$failed" ]; then
    echo "- **$failed customers did not flush.** The first error was: $(sed 's/|/\\|/g' <<<"${F_ERROR[$failed]}" | cut -c1-300)."
    echo "  Over its ${F_RUNS[$failed]} run(s)$([ "${F_PAUSES[$failed]}" -eq 0 ] || echo " (with ${F_PAUSES[$failed]} pause(s) of ${FLUSH_PAUSE_S} s after runs that cleaned nobody)") the receiver stored ${F_RECV_RECORDS[$failed]} new records (${F_RECV_DUPES[$failed]} duplicates)"
    echo "  while ${F_CLEANED[$failed]} customers were reported clean; records delivered but not acknowledged"
    echo "  stay with their counters and are sent again (same ids) by a later run."
    if [ "${F_NOMEM[$failed]}" -gt 0 ]; then
      echo "  The workerd log has ${F_NOMEM[$failed]} lines with \`SQLITE_NOMEM\`, ${F_PANIC[$failed]} Rust panics and"
      echo "  ${F_REINIT[$failed]} \"Reinitializing Wasm application\". Every Durable Object of the Worker lives in"
      echo "  this one workerd process, each open one with its own SQLite database, and a run"
      echo "  opens the counters of all $FLUSH_SHARDS shards at once (up to $FLUSH_PER_RUN): SQLite ran out"
      echo "  of memory. In production Durable Objects spread over many machines, so this"
      echo "  limit belongs to one local workerd process; how the Worker copes with it is its own."
    fi
    if [ "${F_SCHEMA[$failed]}" -gt 0 ]; then
      echo "  ${F_SCHEMA[$failed]} of the panics are \`UsageCounter::new\`'s \`expect(\"counter schema\")\` failing on"
      echo "  that error; a panic (\`panic = \"abort\"\`) reinitializes the Wasm instance that all"
      echo "  Durable Objects of the isolate share, so the calls in flight in it never answer."
    fi
    if [ "${F_TIMEOUTS[$failed]}" -gt 0 ]; then
      echo "  ${F_TIMEOUTS[$failed]} run(s) gave no answer within ${FLUSH_RUN_S} s."
    fi
    local ok=""
    for n in "${FLUSH_SIZES[@]}"; do flush_done "$n" && ok=$n; done
    if [ -n "$ok" ]; then
      echo "  At the rate of the $ok-customer flush ($(flush_rate "${F_CLEANED[$ok]}" "${F_MS[$ok]}") customers/s), ${F_DIRTY[$failed]} customers would take"
      echo "  about $(awk -v n="${F_DIRTY[$failed]}" -v c="${F_CLEANED[$ok]}" -v t="${F_MS[$ok]}" 'BEGIN { printf "%.0f", n / (c / (t / 1000)) }') s of runs if one process could hold the counters (an extrapolation, not a"
      echo "  measurement)."
    fi
  fi
  for n in "${FLUSH_SIZES[@]}"; do
    flush_done "$n" || continue
    [ -z "${F_ERROR[$n]}" ] ||
      echo "- $n customers finished, but a run reported: $(sed 's/|/\\|/g' <<<"${F_ERROR[$n]}" | cut -c1-300)."
    [ "${F_RECV_RECORDS[$n]}" = "${F_SENT_RECORDS[$n]}" ] && [ "${F_RECV_DUPES[$n]}" -eq 0 ] &&
      [ "${F_RECV_BAD[$n]}" -eq 0 ] && continue
    echo "- $n customers: the receiver stored ${F_RECV_RECORDS[$n]} new records (${F_RECV_DUPES[$n]} duplicates,"
    echo "  ${F_RECV_BAD[$n]} bad signatures) while the flush counted ${F_SENT_RECORDS[$n]} sent."
  done
  echo
}

flush_how() {
  echo "- Flush: \`target/release/examples/fake_receiver\` (tests/support) on 127.0.0.1 as"
  echo "  \`RATING_URL\`; it checks each batch's signature and dedupes records by id. The"
  echo "  customers are created by \`scripts/bench.d/customers.py\` (8 threads, each with a"
  echo "  kept-alive connection); the Worker's upstream is the fake upstream. \`workerd serve\`"
  echo "  fires no cron triggers, so nothing flushes but the bench's \`POST /admin/v1/flush/run\`."
  echo "  Before each flush the workerd process is replaced by a fresh one on the same"
  echo "  storage (the set-up's requests are all settled and registered by then)."
}

flush_summary() {
  sed -n '/^| dirty customers | set-up/,/^$/p' "$OUT"
}
