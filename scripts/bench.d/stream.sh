# Sourced by proxy.sh: streamed chat completions, every target in interleaved rounds.
# Each round of a target is one curl process sending its requests one after another
# over one kept-alive connection; its first request (the connect) is not counted.
# time_starttransfer is the time to the first response byte, time_total the whole stream.
declare -A S_TTFB50 S_TTFB90 S_TOT50 S_TOT90 S_CPU
pct() { # PERCENT < numbers: nearest-rank percentile
  sort -n | awk -v p="$1" '{ v[NR] = $1 } END { i = int(p / 100 * NR + 0.999999); if (i < 1) i = 1; print v[i] }'
}
stream_run() { # TARGET COUNT: prints "ttfb total status" per request
  local cfg=$WORK/stream.curlrc i
  printf '%s\n' "$STREAM_BODY" >"$WORK/stream.json"
  {
    echo 'silent'
    echo 'request = "POST"'
    echo 'header = "content-type: application/json"'
    [ -z "${AUTH[$1]}" ] || echo "header = \"authorization: ${AUTH[$1]}\""
    echo "data-binary = \"@$WORK/stream.json\""
    echo 'write-out = "%{time_starttransfer} %{time_total} %{http_code}\n"'
    for ((i = 0; i < $2; i++)); do
      echo "url = \"${URL[$1]}\""
      echo 'output = "/dev/null"'
    done
  } >"$cfg"
  curl -K "$cfg"
}
# In interleaved rounds, as the non-streamed points: the TTFB target is judged on the
# rounds' own differences. The percentiles below pool every round.
declare -A S_RTTFB
S_PER_ROUND=$(((STREAM_N + ROUNDS - 1) / ROUNDS))
STREAM_N=$((S_PER_ROUND * ROUNDS))
for t in "${TARGETS[@]}"; do
  step "streamed chat (50 tokens), $t: 20 warm-up requests"
  stream_run "$t" 20 >"$WORK/stream.warm"
  : >"$WORK/stream.$t"
  S_CPU[$t]=0
  [ -z "${BASE[$t]:-}" ] || SENT[$t]=$((${SENT[$t]} + $(awk '$3 == 200' "$WORK/stream.warm" | wc -l)))
done
for ((round = 1; round <= ROUNDS; round++)); do
  for t in "${TARGETS[@]}"; do
    step "streamed chat (50 tokens), $t, round $round of $ROUNDS: $S_PER_ROUND sequential requests"
    # CPU per stream: workerd's (the upstream's for direct), as for non-streamed load.
    cpu_pid=$WORKERD_PID
    [ "$t" != direct ] || cpu_pid=$UPSTREAM_PID
    c0=$(proc_ticks "$cpu_pid")
    stream_run "$t" $((S_PER_ROUND + 1)) >"$WORK/stream.all"
    c1=$(proc_ticks "$cpu_pid")
    S_CPU[$t]=$((${S_CPU[$t]} + c1 - c0))
    [ -z "${BASE[$t]:-}" ] || SENT[$t]=$((${SENT[$t]} + S_PER_ROUND + 1))
    tail -n +2 "$WORK/stream.all" >"$WORK/stream.round"
    bad=$(awk '$3 != 200' "$WORK/stream.all" | wc -l)
    [ "$bad" -eq 0 ] || die "$t: $bad streamed requests did not answer 200"
    [ "$(wc -l <"$WORK/stream.round")" -eq "$S_PER_ROUND" ] || die "$t: expected $S_PER_ROUND streamed results"
    S_RTTFB[$t/$round]=$(awk '{ printf "%.0f\n", $1 * 1e6 }' "$WORK/stream.round" | pct 50)
    cat "$WORK/stream.round" >>"$WORK/stream.$t"
    info "TTFB p50 ${S_RTTFB[$t/$round]} us"
  done
done
for t in "${TARGETS[@]}"; do
  S_CPU[$t]=$((${S_CPU[$t]} * 1000000 / HZ / (STREAM_N + ROUNDS)))
  S_TTFB50[$t]=$(awk '{ printf "%.0f\n", $1 * 1e6 }' "$WORK/stream.$t" | pct 50)
  S_TTFB90[$t]=$(awk '{ printf "%.0f\n", $1 * 1e6 }' "$WORK/stream.$t" | pct 90)
  S_TOT50[$t]=$(awk '{ printf "%.0f\n", $2 * 1e6 }' "$WORK/stream.$t" | pct 50)
  S_TOT90[$t]=$(awk '{ printf "%.0f\n", $2 * 1e6 }' "$WORK/stream.$t" | pct 90)
  info "$t: TTFB p50 ${S_TTFB50[$t]} us, p90 ${S_TTFB90[$t]} us; whole stream p50 ${S_TOT50[$t]} us; CPU ${S_CPU[$t]} us per stream"
done

stream_target() { # the TTFB target row: the median of the rounds' own differences
  local m rest
  read -r m rest < <(by_round S_RTTFB metered bare diff)
  echo "| metered stream TTFB p50 ≤ the bare route's + 0.5 ms | $m ms (median of the rounds' differences: $rest; all rounds $(ms "${S_TTFB50[metered]}") vs $(ms "${S_TTFB50[bare]}") ms) | $(verdict "$m" 0.5) |"
}

stream_report() {
  local t pair a b
  echo "### Streamed chat completion"
  echo
  echo "\`\"stream\": true\`, 50 completion tokens (53 SSE events, sent as fast as possible),"
  echo "$STREAM_N sequential requests per target after 20 warm-up requests, in $ROUNDS interleaved"
  echo "rounds of $S_PER_ROUND, each over one kept-alive connection whose first request (the"
  echo "connect) is not counted. The percentiles pool the rounds; the target row takes the"
  echo "median of the rounds' own differences."
  echo "TTFB is curl's \`time_starttransfer\` (first response byte);"
  echo "*stream* is \`time_total\` (until the last byte). In ms. *CPU per stream* is the"
  echo "workerd process's CPU time over the measured requests, per request (for *direct*:"
  echo "the upstream's)."
  echo
  echo "| target | TTFB p50 | TTFB p90 | stream p50 | stream p90 | CPU per stream (ms) |"
  echo "|---|---:|---:|---:|---:|---:|"
  for t in "${TARGETS[@]}"; do
    echo "| ${LABEL[$t]} | $(ms "${S_TTFB50[$t]}") | $(ms "${S_TTFB90[$t]}") | $(ms "${S_TOT50[$t]}") | $(ms "${S_TOT90[$t]}") | $(ms "${S_CPU[$t]}") |"
  done
  echo
  echo "| comparison | TTFB p50 | TTFB p90 | stream p50 | stream p90 | TTFB p50 difference |"
  echo "|---|---:|---:|---:|---:|---:|"
  for pair in "${PAIRS[@]}"; do
    read -r a b <<<"$pair"
    echo "| ${LABEL[$a]} ÷ ${LABEL[$b]} | $(ratio "${S_TTFB50[$a]}" "${S_TTFB50[$b]}") | $(ratio "${S_TTFB90[$a]}" "${S_TTFB90[$b]}") | $(ratio "${S_TOT50[$a]}" "${S_TOT50[$b]}") | $(ratio "${S_TOT90[$a]}" "${S_TOT90[$b]}") | $(plus_ms "${S_TTFB50[$a]}" "${S_TTFB50[$b]}") |"
  done
  echo
}
