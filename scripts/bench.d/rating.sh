# The rating section of scripts/bench, sourced by it at the top level: it uses the
# script's helpers and variables, and its own variables stay visible to the report.
#
# A fresh workerd's built-in rating endpoint (/rating/v1), driven by
# scripts/bench.d/rating_load.py: signed ingestion of native batches (500 records), as a
# flush delivers them (every record another customer's, a batch of one flush shard's
# customers; then of any customers; 10,000 customers, a sample of whose invoices is
# checked against what was sent) and for one customer whose
# records grow towards BENCH_RATING_RECORDS, with the invoice and the price preview
# timed along the way. Then the pure core, natively, if the crate has the
# rating_core_bench example.

RATING_SECRET=whsec_bench_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
RATING_PERIOD=$(date -u +%Y-%m-01)
RATING_SPREAD_CUSTOMERS=${BENCH_RATING_CUSTOMERS:-10000}
RATING_FLUSH_SHARDS=16
RATING_SPREAD_SECONDS=15
RATING_CALLS=20
RATING_CHECKPOINTS=10000,100000

step "rating: starting a fresh workerd with the built-in rating endpoint"
start_worker rating "$WORK/do-rating" "RATING_SECRET=$RATING_SECRET"
RATING_URL=$SECTION_URL
info "workerd on $RATING_URL (pid $SECTION_PID); records of the period starting $RATING_PERIOD"
rating_load() { # MODE ARGS...
  python3 scripts/bench.d/rating_load.py "$1" --url "$RATING_URL" --token "$ADMIN_TOKEN" \
    --secret "$RATING_SECRET" --period "$RATING_PERIOD" --price-book price_book.json "${@:2}"
}

spread_run() { # NAME FLUSH_SHARDS: runs, checks, and leaves the summary in $WORK/NAME.json
  rating_load spread --customers "$RATING_SPREAD_CUSTOMERS" --seconds "$RATING_SPREAD_SECONDS" \
    --flush-shards "$2" --prefix "$1-" >"$WORK/$1.json"
  local r
  r=$(tail -n 1 "$WORK/$1.json")
  [ -z "$(jq -r '.error // empty' <<<"$r")" ] || die "rating ingestion failed: $(jq -r .error <<<"$r")"
  info "$(jq -r '"\(.stored) records of \(.customers_with_records) customers in \(.batches) batches in \(.seconds) s: \(.records_per_s) records/s (accounts set in \(.accounts_s) s); invoices checked: \(.invoices_checked), wrong: \(.invoices_wrong | length)"' <<<"$r")"
}
step "rating endpoint, as a flush delivers: batches of 500 records, each of one flush shard's customers ($RATING_FLUSH_SHARDS flush shards, $RATING_SPREAD_CUSTOMERS customers), ${RATING_SPREAD_SECONDS} s"
spread_run spread "$RATING_FLUSH_SHARDS"
R_SPREAD=$(tail -n 1 "$WORK/spread.json")
step "rating endpoint, batches of 500 records of any customers (no flush shard), ${RATING_SPREAD_SECONDS} s"
spread_run mixed 0
R_MIXED=$(tail -n 1 "$WORK/mixed.json")

step "rating endpoint, one customer: up to $RATING_RECORDS records or ${RATING_SECONDS} s; invoice and preview timed (median of $RATING_CALLS) at $RATING_CHECKPOINTS and the end"
rating_load single --customer rating-bench --target "$RATING_RECORDS" --seconds "$RATING_SECONDS" \
  --checkpoints "$RATING_CHECKPOINTS" --calls "$RATING_CALLS" | tee "$WORK/single.jsonl" |
  jq -r --unbuffered 'if .kind == "checkpoint" then
      "    \(.records) records: invoice \(.invoice.median_ms) ms, preview \(.preview.median_ms) ms (medians)"
    else "    \(.records) records in \(.sending_s) s of sending: \(.records_per_s) records/s" end'
R_SINGLE=$(jq -c 'select(.kind == "summary")' "$WORK/single.jsonl")
[ -n "$R_SINGLE" ] || die "the one-customer rating run printed no summary"
[ -z "$(jq -r '.error // empty' <<<"$R_SINGLE")" ] || die "rating ingestion failed: $(jq -r .error <<<"$R_SINGLE")"
R_PEAK=$(proc_kib "$SECTION_PID" VmHWM)
R_DISK=$(du -sk "$WORK/do-rating" | cut -f1)
R_ERRORS=$(grep -ci -e error -e exception "$WORKERD_LOG" || true)
step "stopping the rating section's workerd"
stop "$SECTION_PID"
SECTION_PID=""

# Where the flush-shaped path's time goes: a build with function names, served by its
# own workerd with V8's inspector on, sampled over one more flush-shaped run (fresh
# customers) after their accounts are set. A failed profile is reported, not fatal.
R_PROFILE_S=10
R_PROFILE=""
PROFILE_DIR=${PROFILE_DIR:-$ROOT/target/profile}
rating_profile() {
  local dir=$WORK/profile port inspector out stored
  names_build "$dir" || return 1
  port=$(free_port 18950) || return 1
  inspector=$(free_port $((port + 1))) || return 1
  mkdir -p "$WORK/do-rating-profile" "$PROFILE_DIR"
  python3 scripts/bench.d/workerd_config.py --wrangler wrangler.toml \
    --js "$NAMES_JS" --wasm "$NAMES_WASM" --instance "$port:$WORK/do-rating-profile" \
    --var "ADMIN_TOKEN=$ADMIN_TOKEN" --var "KEY_SECRET=$ADMIN_TOKEN-keys" \
    --var "RATING_SECRET=$RATING_SECRET" --var-file CATALOG=catalog.json >"$dir/rating.capnp" || return 1
  "$WORKERD" serve "$dir/rating.capnp" --experimental \
    --inspector-addr="127.0.0.1:$inspector" >"$dir/rating-workerd.log" 2>&1 &
  WORKERD_PID=$!
  profile_worker_up "http://127.0.0.1:$port" "$dir/rating-workerd.log" || return 1
  step "profile: rating ingest as a flush delivers, ${R_PROFILE_S} s"
  local load=(python3 scripts/bench.d/rating_load.py spread --url "http://127.0.0.1:$port"
    --token "$ADMIN_TOKEN" --secret "$RATING_SECRET" --period "$RATING_PERIOD"
    --customers "$RATING_SPREAD_CUSTOMERS" --flush-shards "$RATING_FLUSH_SHARDS" --prefix prof- --verify 0)
  "${load[@]}" --seconds 0 >/dev/null || return 1
  out=$(node scripts/profile.d/sample.mjs "ws://127.0.0.1:$inspector/worker0" \
    "$PROFILE_DIR/rating.cpuprofile" "${load[@]}" --accounts-set --seconds "$R_PROFILE_S" | tail -n 1)
  stop "$WORKERD_PID"
  WORKERD_PID=""
  stored=$(jq -r .stored <<<"$out")
  [ "$stored" -gt 0 ] 2>/dev/null || return 1
  R_PROFILE=$(node scripts/profile.d/top.mjs "$PROFILE_DIR/rating.cpuprofile" "$stored" record \
    "$dir/dist/$NAMES_JS" \
    "the endpoint: signature, batch check, routing=rating_api::ingest" \
    "a shard's reads (SQLite, one statement each)=edge::sql::rows" \
    "a shard's writes in one transaction (SQLite)=^transactionSync$") || return 1
  R_PROFILE="$stored records sampled while sending ($(jq -r .records_per_s <<<"$out") records/s under the profiler).

$R_PROFILE"
  info "wrote $PROFILE_DIR/rating.cpuprofile"
}
rating_profile || {
  stop "$WORKERD_PID"
  WORKERD_PID=""
  R_PROFILE="The profile could not be taken in this run (see scripts/bench.d/rating.sh)."
}

R_CORE_ONE=""
R_CORE_MANY=""
if [ -n "$CORE_BENCH" ]; then
  step "rating, pure core (rating_core_bench, natively): 1000000 records of 1 customer, then 100000 of 1000"
  R_CORE_ONE=$("$CORE_BENCH" 1000000 1)
  info "$R_CORE_ONE"
  R_CORE_MANY=$("$CORE_BENCH" 100000 1000)
  info "$R_CORE_MANY"
else
  step "rating, pure core: skipped (the crate has no rating_core_bench example)"
fi

# ---------------------------------------------------------------- report
rating_targets() {
  local per_s wrong result
  per_s=$(jq -r .records_per_s <<<"$R_SPREAD")
  result="**missed**"
  [ "$per_s" -ge 20000 ] && result="**met**"
  echo "| flush-shaped rating ingest ≥ 20,000 records/s (batches of 500, each of one flush shard's customers) | $per_s records/s | $result |"
  wrong=$(jq -s '[.[] | .invoices_wrong | length] | add' "$WORK/spread.json" "$WORK/mixed.json")
  result="**missed**"
  [ "$R_ERRORS" = 0 ] && [ "$wrong" = 0 ] && [ "$(jq -r .customers_with_records <<<"$R_SPREAD")" -ge 10000 ] && result="**met**"
  echo "| 10,000 distinct customers' records ingested by one workerd with no error | $(jq -r .customers_with_records <<<"$R_SPREAD") customers, $R_ERRORS error lines, $wrong of $(jq -s '[.[] | .invoices_checked] | add' "$WORK/spread.json" "$WORK/mixed.json") checked invoices wrong | $result |"
}
rating_notes() { :; }

rating_report() {
  local reached records per_s rest line one_totals
  reached=$(jq -r .reached <<<"$R_SINGLE")
  records=$(jq -r .records <<<"$R_SINGLE")
  per_s=$(jq -r .records_per_s <<<"$R_SINGLE")
  echo "## Rating engine"
  echo
  echo "A fresh workerd with the built-in rating endpoint (\`RATING_SECRET\` set), storage"
  echo "on $DO_FS. Records are native usage records of the period starting $RATING_PERIOD,"
  echo "meter \`chat.completions\`, models cycling over gpt-4o-mini, gpt-4o and o3-mini, one"
  echo "request each, every one with a new id; batches of 500, signed at send time, sent on"
  echo "2 threads (\`scripts/bench.d/rating_load.py\`). Accounts: plan \`starter\` of the"
  echo "default price book, country US."
  echo
  echo "### Ingestion throughput"
  echo
  echo "| path | records | batches | seconds | records/s |"
  echo "|---|---:|---:|---:|---:|"
  echo "| endpoint, as a flush delivers: every record another customer's, a batch of one flush shard's ($RATING_SPREAD_CUSTOMERS customers) | $(jq -r '"\(.stored) | \(.batches) | \(.seconds) | \(.records_per_s)"' <<<"$R_SPREAD") |"
  echo "| endpoint, every record another customer's, a batch of any customers ($RATING_SPREAD_CUSTOMERS customers) | $(jq -r '"\(.stored) | \(.batches) | \(.seconds) | \(.records_per_s)"' <<<"$R_MIXED") |"
  echo "| endpoint, one customer | $(jq -r '"\(.records) | \(.batches) | \(.sending_s) | \(.records_per_s)"' <<<"$R_SINGLE") |"
  if [ -n "$R_CORE_ONE" ]; then
    echo "| pure core, one customer (parse_batch + running totals) | $(jq -r '"\(.records) | \(.batches) | \((.records / .ingest_records_per_s * 1000 | round) / 1000) | \(.ingest_records_per_s)"' <<<"$R_CORE_ONE") |"
    echo "| pure core, 1000 customers | $(jq -r '"\(.records) | \(.batches) | \((.records / .ingest_records_per_s * 1000 | round) / 1000) | \(.ingest_records_per_s)"' <<<"$R_CORE_MANY") |"
  fi
  echo
  echo "Ratios:"
  echo
  echo "- endpoint, one customer ÷ endpoint, every record another customer's: $(ratio "$per_s" "$(jq -r .records_per_s <<<"$R_SPREAD")")"
  if [ -n "$R_CORE_ONE" ]; then
    echo "- pure core ÷ endpoint, one customer: $(ratio "$(jq -r .ingest_records_per_s <<<"$R_CORE_ONE")" "$per_s")"
    echo "- pure core ÷ endpoint, every record another customer's: $(ratio "$(jq -r .ingest_records_per_s <<<"$R_CORE_MANY")" "$(jq -r .records_per_s <<<"$R_SPREAD")")"
  fi
  echo
  echo "A batch of the first two rows carries records of 500 customers. Ledgers live in"
  echo "$(grep -o 'LEDGER_SHARDS: u32 = [0-9]*' src/ledger/mod.rs | grep -o '[0-9]*$') Ledger shards, hashed as the flush shards are: a batch of the first row (one"
  echo "flush shard's customers, as a flush sends them) is one Ledger call; a batch of the"
  echo "second row reaches every shard. A batch of the third row is one Ledger call too."
  echo "After each run, $(jq -r .invoices_checked <<<"$R_SPREAD") customers' invoices (spread over the"
  echo "customers) were read: each bills exactly the requests sent for that customer"
  echo "(wrong: $(jq -s '[.[] | .invoices_wrong | length] | add' "$WORK/spread.json" "$WORK/mixed.json"))."
  echo
  echo "### Where the flush-shaped ingest's time goes"
  echo
  echo "V8's CPU profiler sampled the isolate (JavaScript, the wasm, and the runtime's"
  echo "built-ins it calls, SQLite's \`exec\` included) through workerd's inspector over one"
  echo "more flush-shaped run of ${R_PROFILE_S} s, on a build with function names kept; the endpoint"
  echo "and the Ledger shards share the isolate. The profile is \`target/profile/rating.cpuprofile\`."
  echo
  echo "$R_PROFILE"
  echo
  echo "### Invoice and preview time as one customer's records grow"
  echo
  echo "\`GET /rating/v1/customers/rating-bench/invoices/$RATING_PERIOD\` and \`POST /rating/v1/preview\`"
  echo "(the same period under a draft book: the default price book with a \`starter\` base"
  echo "fee of 5.00), each called $RATING_CALLS times in a row when the customer had the records"
  echo "shown; ms. The Ledger keeps a running total per period × meter × model as records"
  echo "arrive, so an invoice reads those totals, never the records: here 1 meter × 3 models"
  echo "= 3 totals, however many records."
  echo
  echo "| records stored | invoice median | invoice max | preview median | preview max | invoice total | requests line | preview difference |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
  jq -r 'select(.kind == "checkpoint") | "| \(.records) | \(.invoice.median_ms) | \(.invoice.max_ms) | \(.preview.median_ms) | \(.preview.max_ms) | \(.invoice_total) | \(.line_units["requests/None"] // "n/a") | \(.preview_difference) |"' "$WORK/single.jsonl"
  echo
  one_totals=$(jq -s '[.[] | select(.kind == "checkpoint") | .preview.median_ms] | "\(min) to \(max)"' -r "$WORK/single.jsonl")
  echo "Preview medians ranged $one_totals ms while the records grew"
  echo "$(jq -s -r '[.[] | select(.kind == "checkpoint") | .records] | "from \(min) to \(max)"' "$WORK/single.jsonl") ($(jq -s -r '[.[] | select(.kind == "checkpoint") | .records] | "\((max / min * 10 | round) / 10)"' "$WORK/single.jsonl")×)."
  if [ -n "$R_CORE_ONE" ]; then
    echo "The pure core rates one invoice (\`rate()\` of the \`pro\` plan, 3 models) in"
    echo "$(jq -r .invoice_rate_us <<<"$R_CORE_ONE") µs ($(jq -r .invoices_per_s <<<"$R_CORE_ONE") invoices/s); the endpoint's invoice median at the"
    echo "end is $(ratio "$(jq -s -r '[.[] | select(.kind == "checkpoint")] | last | .invoice.median_ms * 1000' "$WORK/single.jsonl")" "$(jq -r .invoice_rate_us <<<"$R_CORE_ONE")") that (HTTP, the Ledger Durable Object, reading the totals, JSON)."
  fi
  echo
  if [ "$reached" = true ]; then
    echo "The one-customer run reached $records records in $(jq -r .sending_s <<<"$R_SINGLE") s of sending."
  else
    rest=$(awk -v t="$RATING_RECORDS" -v r="$per_s" 'BEGIN { if (r > 0) printf "%.0f", t / r; else print "n/a" }')
    echo "**The one-customer run stopped at $records records** (the limit is ${RATING_SECONDS} s of sending):"
    echo "at the measured $per_s records/s, $RATING_RECORDS records would take about $rest s."
  fi
  line=$(jq -r '.dedupe | if . then "sending its last batch again stored \(.stored) of \(.sent) records (\(.duplicates) duplicates)" else "no dedupe check" end' <<<"$R_SINGLE")
  echo "Checks: $line; the invoice's requests line counts the records stored (table above)."
  echo "Disk used by the section's Durable Object storage afterwards (both runs): $((R_DISK / 1024)) MiB; peak RSS of that workerd"
  echo "over the section: $(mib "$R_PEAK") MiB. Lines mentioning an error or exception in its log: $R_ERRORS."
  echo
  if [ -z "$R_CORE_ONE" ]; then
    echo "The pure core was not measured: the crate has no \`rating_core_bench\` example."
    echo
  fi
}

rating_how() {
  echo "- Rating: \`POST /rating/v1/ingest\` with native batches signed like the flush's"
  echo "  (\`X-Edgemeter-Signature: t=…,v1=HMAC-SHA256(secret, \"t.body\")\`), generated and"
  echo "  signed by \`scripts/bench.d/rating_load.py\` (Python standard library) while sending;"
  echo "  its time counts in the records/s. The endpoint hands each Ledger shard its"
  echo "  customers' records in one call; the shard stores each id once and updates the"
  echo "  running totals in a few statements and one transaction."
  if [ -n "$R_CORE_ONE" ]; then
    echo "- Pure core: \`target/release/examples/rating_core_bench\` (tests/support) renders the"
    echo "  batches in memory first, then times \`ledger::parse_batch\` + \`ledger::tally_of\` +"
    echo "  \`Tally::plus\` into totals per customer × period × meter × model, and \`rating::rate\`"
    echo "  over one customer's totals (2000 rounds). Built with the crate's release profile"
    echo "  (\`opt-level = \"s\"\`, as for the Worker), natively on this machine."
  fi
}

rating_summary() {
  sed -n '/^| path | records/,/^$/p' "$OUT"
  sed -n '/^| records stored/,/^$/p' "$OUT"
}
