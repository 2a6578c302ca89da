# The flush section of scripts/bench, sourced by it at the top level: it uses the
# script's helpers and variables, and its own variables stay visible to the report.
#
# A fresh workerd flushes to the fake rating receiver (tests/support/fake_receiver.rs,
# which verifies signatures and dedupes by record id). For each size in
# BENCH_FLUSH_CUSTOMERS (ascending) the customers are made dirty (new ones created, each
# with a live key and one metered request; those flushed before get one more request),
# their counters push them to the shards (after a settlement, at most once per
# FLUSH_PUSH_MS, the rest on the counter's alarm), then POST /admin/v1/flush/run (what the cron runs) is called until
# GET /admin/v1/flush shows no waiting record, each run bounded by BENCH_FLUSH_RUN_S.

FLUSH_SHARDS=$(sed -n 's/^FLUSH_SHARDS *= *"\([0-9]*\)".*/\1/p' wrangler.toml | head -n 1)
FLUSH_SHARDS=${FLUSH_SHARDS:-16}
FLUSH_BATCH=$(sed -n 's/^FLUSH_BATCH_RECORDS *= *"\([0-9]*\)".*/\1/p' wrangler.toml | head -n 1)
FLUSH_BATCH=${FLUSH_BATCH:-500}
# What one shard sends per run: MAX_RECORDS_PER_RUN in src/edge/flush_shard.rs.
FLUSH_PER_SHARD=$(sed -n 's/^const MAX_RECORDS_PER_RUN: [a-z0-9]* = \([0-9_]*\);.*/\1/p' src/edge/flush_shard.rs | tr -d _)
FLUSH_PER_SHARD=${FLUSH_PER_SHARD:-20000}
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

# The flush stats' overall part; pending_records is -1 when the stats could not be read
# or a shard answered with an error (its waiting records would be missing).
flush_overall() {
  curl -sS --max-time 30 "$FLUSH_URL/admin/v1/flush" -H "authorization: Bearer $ADMIN_TOKEN" 2>/dev/null |
    jq -c '.overall + (if ([.shards[] | select(.error)] | length) > 0 then {pending_customers: -1, pending_records: -1} else {} end)' 2>/dev/null ||
    echo '{"pending_customers":-1,"pending_records":-1,"batches_sent":0,"records_sent":0}'
}
receiver_stats() { curl -sS --max-time 10 "$RECEIVER_URL/stats"; }
log_count() { # PATTERN FROM_LINE: lines matching PATTERN in the workerd log after FROM_LINE
  tail -n +"$(($2 + 1))" "$WORKERD_LOG" | grep -c -- "$1" || true
}

declare -A F_SETUP_MS F_NEW F_REMETER F_SETUP_FAILED F_SETUP_ERROR F_DIRTY F_WAITING F_PUSH_MS
declare -A F_RUNS F_RUN_MS F_MS F_SENT_BATCHES F_SENT_RECORDS F_PENDING F_METERED F_RECV_REQUESTS
declare -A F_RECV_BATCHES F_RECV_RECORDS F_RECV_DUPES F_RECV_BAD F_TIMEOUTS F_ERROR
declare -A F_RSS0 F_HWM F_HWM_SCOPE F_NOMEM F_REINIT F_PANIC F_NEVER
FLUSH_SIZES=()
FLUSH_SKIPPED=""
have=0
metered=0
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
  metered=$((metered + F_NEW[$n] + F_REMETER[$n]))
  F_METERED[$n]=$metered
  info "set up in $(ms "${F_SETUP_MS[$n]}") s: ${F_NEW[$n]} created, ${F_REMETER[$n]} metered again, ${F_SETUP_FAILED[$n]} failed${F_SETUP_ERROR[$n]:+ (first: ${F_SETUP_ERROR[$n]})}"

  # Settlement, and with it the push, runs after the response (waitUntil): wait until
  # every dirty customer has records waiting in a shard.
  expect=$((F_NEW[$n] + F_REMETER[$n]))
  t1=$(now_ms)
  for _ in $(seq 600); do
    F_DIRTY[$n]=$(flush_overall | jq .pending_customers)
    [ "${F_DIRTY[$n]}" -lt "$expect" ] || break
    sleep 0.2
  done
  F_PUSH_MS[$n]=$(($(now_ms) - t1))
  F_WAITING[$n]=$(flush_overall | jq .pending_records)
  # The flush gets a fresh workerd process on the same storage: its memory is then the
  # flush's own (the allocator keeps what the set-up used).
  info "${F_DIRTY[$n]} customers with ${F_WAITING[$n]} records waiting in the shards $(ms "${F_PUSH_MS[$n]}") s after the set-up; restarting workerd on the same storage for the flush"
  stop "$SECTION_PID"
  SECTION_PID=""
  start_flush_worker "flush-$n"

  # The flush: runs back to back until nothing waits, each bounded by a cron minute; no
  # run starts after FLUSH_BUDGET_S.
  recv0=$(receiver_stats)
  stats0=$(flush_overall)
  log0=$(wc -l <"$WORKERD_LOG")
  F_RSS0[$n]=$(proc_kib "$SECTION_PID" VmRSS)
  F_HWM_SCOPE[$n]=$(reset_peak "$SECTION_PID")
  F_RUNS[$n]=0 F_RUN_MS[$n]="" F_TIMEOUTS[$n]=0 F_ERROR[$n]=""
  F_PENDING[$n]=${F_WAITING[$n]}
  step "flush, $n dirty customers: POST /admin/v1/flush/run until no record waits (each run at most ${FLUSH_RUN_S} s)"
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
    # Over the shards: customers, batches and records sent, the first error.
    summary=$(jq -r '[([.shards[] | .customers // 0] | add // 0),
      ([.shards[] | .batches // 0] | add // 0), ([.shards[] | .records // 0] | add // 0),
      ([.shards[] | (.error // .skipped // empty) | tostring] | first // "-" | gsub("\\s+"; " "))] | @tsv' \
      "$WORK/run.json" 2>/dev/null) || true
    read -r customers batches records err <<<"${summary:-0 0 0 -}"
    [ "$err" = - ] || F_ERROR[$n]=${F_ERROR[$n]:-"a shard reported: $err"}
    F_PENDING[$n]=$(flush_overall | jq .pending_records)
    info "run $run: $(ms $((r1 - r0))) s; $customers customers, sent $batches batches with $records records; ${F_PENDING[$n]/#-1/unknown} records waiting$([ "$err" = - ] || echo "; a shard: ${err:0:200}")"
    [ "${F_PENDING[$n]}" -ne 0 ] || break
  done
  F_MS[$n]=$(($(now_ms) - t0))
  F_HWM[$n]=$(proc_kib "$SECTION_PID" VmHWM)
  recv1=$(receiver_stats)
  stats1=$(flush_overall)
  F_RECV_BATCHES[$n]=$(($(jq .batches <<<"$recv1") - $(jq .batches <<<"$recv0")))
  F_RECV_RECORDS[$n]=$(($(jq .records <<<"$recv1") - $(jq .records <<<"$recv0")))
  F_RECV_DUPES[$n]=$(($(jq .duplicates <<<"$recv1") - $(jq .duplicates <<<"$recv0")))
  F_RECV_BAD[$n]=$(($(jq .bad_signatures <<<"$recv1") - $(jq .bad_signatures <<<"$recv0")))
  F_RECV_REQUESTS[$n]=$(jq .requests <<<"$recv1")
  if [ "$(jq .pending_records <<<"$stats1")" -ge 0 ] && [ "$(jq .pending_records <<<"$stats0")" -ge 0 ]; then
    F_SENT_BATCHES[$n]=$(($(jq .batches_sent <<<"$stats1") - $(jq .batches_sent <<<"$stats0")))
    F_SENT_RECORDS[$n]=$(($(jq .records_sent <<<"$stats1") - $(jq .records_sent <<<"$stats0")))
  else
    # A shard could not report: its counts are missing from the sums.
    F_SENT_BATCHES[$n]=unknown F_SENT_RECORDS[$n]=unknown
  fi
  F_NOMEM[$n]=$(log_count SQLITE_NOMEM "$log0")
  F_REINIT[$n]=$(log_count 'Reinitializing Wasm application' "$log0")
  F_PANIC[$n]=$(log_count 'Rust panic' "$log0")
  F_NEVER[$n]=$(log_count 'Promise will never complete' "$log0")
  info "$(ms "${F_MS[$n]}") s in ${F_RUNS[$n]} run(s); receiver: ${F_RECV_BATCHES[$n]} batches, ${F_RECV_RECORDS[$n]} records," \
    "${F_RECV_REQUESTS[$n]} requests of ${F_METERED[$n]} metered; workerd RSS $(mib "${F_RSS0[$n]}") MiB before, peak $(mib "${F_HWM[$n]}") MiB"
  if [ "${F_PENDING[$n]}" -ne 0 ] || [ "${F_DIRTY[$n]}" -lt "$expect" ]; then
    # What a failed size leaves behind would distort any larger size.
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
flush_done() { [ "${F_PENDING[$1]}" -eq 0 ] && [ "${F_RECV_REQUESTS[$1]}" = "${F_METERED[$1]}" ]; }

flush_targets() {
  local n=10000 runs measured result
  if [ -z "${F_RUNS[$n]:-}" ]; then
    echo "| 10k dirty customers flushed within one cron minute | not measured (BENCH_FLUSH_CUSTOMERS has no 10000$([ -z "$FLUSH_SKIPPED" ] || echo ", or a smaller size failed")) | n/a |"
    return
  fi
  runs=${F_RUNS[$n]}
  if flush_done "$n"; then
    measured="$(ms "${F_MS[$n]}") s in $runs run(s); the receiver's deduplicated requests equal the $((F_METERED[$n])) metered"
    if [ "$runs" -eq 1 ] && [ "${F_MS[$n]}" -le 60000 ]; then result="**met**"; else result="**missed**"; fi
    [ "$runs" -eq 1 ] || measured+="; under the cron, run $runs starts $((runs - 1)) minute(s) after the first"
  else
    measured="not finished: ${F_PENDING[$n]/#-1/an unknown number of} records still waiting after $runs run(s) ($(ms "${F_MS[$n]}") s); receiver has ${F_RECV_REQUESTS[$n]} of ${F_METERED[$n]} requests"
    result="**missed**"
  fi
  echo "| 10k dirty customers flushed within one cron minute ($FLUSH_SHARDS shards) | $measured | $result |"
}

flush_notes() { :; }

flush_report() {
  local n
  echo "## Cron flush"
  echo
  echo "A fresh workerd flushing to the fake rating receiver (\`RATING_URL\`, native format,"
  echo "\`FLUSH_SHARDS = $FLUSH_SHARDS\`, \`FLUSH_BATCH_RECORDS = $FLUSH_BATCH\` as in wrangler.toml,"
  echo "\`FLUSH_PUSH_MS\` at its default, \`FLUSH_BACKOFF_MS = 0\`). Each size adds customers to the"
  echo "previous one: new customers get a live key and one metered chat completion, those"
  echo "flushed before get one more request. A counter pushes its new records to its shard"
  echo "right after the settlement (at most once per \`FLUSH_PUSH_MS\`, later changes on its"
  echo "alarm); *push wait* is how long after the set-up's last response every dirty"
  echo "customer had records waiting in a shard."
  echo "Then \`POST /admin/v1/flush/run\` (what the cron runs: every shard at once, and no"
  echo "counter) is called back to back until \`GET /admin/v1/flush\` shows no waiting record;"
  echo "each run may take at most ${FLUSH_RUN_S} s (a cron minute), and no run starts after"
  echo "${FLUSH_BUDGET_S} s. A shard sends at most $FLUSH_PER_SHARD records per run. *Flush time* runs from"
  echo "the first run's start to the \`GET /admin/v1/flush\` that showed nothing waiting."
  echo
  echo "| dirty customers | set-up | push wait | records waiting | flush runs | run times (s) | flush time (s) | customers/s | records/s | batches sent | records sent | waiting after |"
  echo "|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"
  for n in "${FLUSH_SIZES[@]}"; do
    echo "| ${F_DIRTY[$n]} | $(ms "${F_SETUP_MS[$n]}") s | $(ms "${F_PUSH_MS[$n]}") s | ${F_WAITING[$n]} | ${F_RUNS[$n]} | $(for r in ${F_RUN_MS[$n]}; do printf '%s ' "$(ms "$r")"; done | sed 's/ $//; s/ /, /g') | $(ms "${F_MS[$n]}") | $(flush_done "$n" && flush_rate "${F_DIRTY[$n]}" "${F_MS[$n]}" || echo n/a) | $(flush_done "$n" && flush_rate "${F_RECV_RECORDS[$n]}" "${F_MS[$n]}" || echo n/a) | ${F_SENT_BATCHES[$n]} | ${F_SENT_RECORDS[$n]} | ${F_PENDING[$n]/#-1/unknown} |"
  done
  for n in $FLUSH_SKIPPED; do
    echo "| $n | not measured: the previous size did not finish | | | | | | | | | | |"
  done
  echo
  echo "*Batches sent* and *records sent* are the flush's own counters"
  echo "(\`overall.batches_sent\`, \`records_sent\`; unknown when a shard could not report"
  echo "them). The receiver's view of the same runs, and the exactness check: the requests"
  echo "its deduplicated records carry against the requests the set-up metered (all sizes"
  echo "so far):"
  echo
  echo "| dirty customers | receiver batches | receiver records (new ids) | duplicates | bad signatures | receiver requests | metered requests | set-up failures |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
  for n in "${FLUSH_SIZES[@]}"; do
    echo "| ${F_DIRTY[$n]} | ${F_RECV_BATCHES[$n]} | ${F_RECV_RECORDS[$n]} | ${F_RECV_DUPES[$n]} | ${F_RECV_BAD[$n]} | ${F_RECV_REQUESTS[$n]} | ${F_METERED[$n]} | ${F_SETUP_FAILED[$n]} |"
  done
  echo
  echo "Memory of the workerd process that ran the flush (all of the Worker's isolates and"
  echo "Durable Objects live in it; it was started on the set-up's storage right before the"
  echo "flush). *Peak* is VmHWM from /proc, reset (\`echo 5 > clear_refs\`) just before the"
  echo "first run, so it is the flush's own peak unless the column says \"process\". The"
  echo "workerd log columns count lines of that process's log."
  echo
  echo "| dirty customers | RSS before the flush | peak during the flush | peak covers | SQLITE_NOMEM lines | Rust panics | Wasm reinitializations | \"Promise will never complete\" |"
  echo "|---:|---:|---:|---|---:|---:|---:|---:|"
  for n in "${FLUSH_SIZES[@]}"; do
    echo "| ${F_DIRTY[$n]} | $(mib "${F_RSS0[$n]}") MiB | $(mib "${F_HWM[$n]}") MiB | ${F_HWM_SCOPE[$n]} | ${F_NOMEM[$n]} | ${F_PANIC[$n]} | ${F_REINIT[$n]} | ${F_NEVER[$n]} |"
  done
  echo
  flush_findings
}

# Notes that follow from the numbers above; each one only when the run showed it.
flush_findings() {
  local n
  for n in "${FLUSH_SIZES[@]}"; do
    if ! flush_done "$n"; then
      echo "- **$n customers did not flush exactly.** ${F_PENDING[$n]/#-1/An unknown number of} records still waited after ${F_RUNS[$n]} run(s);"
      echo "  the receiver holds ${F_RECV_REQUESTS[$n]} of ${F_METERED[$n]} metered requests.${F_ERROR[$n]:+ The first error was: $(sed 's/|/\\|/g' <<<"${F_ERROR[$n]}" | cut -c1-300).}"
      [ "${F_NOMEM[$n]}" -eq 0 ] || echo "  The workerd log has ${F_NOMEM[$n]} lines with \`SQLITE_NOMEM\`."
      continue
    fi
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
  echo "  storage (the set-up's records have all reached the shards by then)."
}

flush_summary() {
  sed -n '/^| dirty customers | set-up/,/^$/p' "$OUT"
}
