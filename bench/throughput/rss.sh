# Appended to the temporary copy of the shared netns.sh: records the peak RSS (VmHWM) of every
# tunnel process when a peer run ends. run-peer.sh tears down from its EXIT trap, i.e. right
# after the measurement, so wrapping pb_teardown samples the processes at their peak and
# before they are stopped, without changing the shared harness.
eval "$(declare -f pb_teardown | sed '1s/^pb_teardown /_pb_teardown_shared /')"

pb_sample_rss() {
  [ -n "${PB_WORK:-}" ] && [ -d "$PB_WORK" ] || return 0
  local f label pid p kb
  : >"$PB_WORK/rss.tsv"
  for f in "$PB_WORK"/*.pid; do
    [ -f "$f" ] || continue
    label=$(basename "$f" .pid)
    [ "$label" = iperf3-server ] && continue
    pid=$(cat "$f")
    # children count too (as they do for CPU); each process is one line
    for p in $(pb_tree "$pid"); do
      kb=$(awk '/^VmHWM:/{print $2}' "/proc/$p/status" 2>/dev/null)
      [ -n "$kb" ] && printf '%s\t%s\t%s\t%s\n' "$label" "$p" "$kb" "$(cat "/proc/$p/comm" 2>/dev/null)" >>"$PB_WORK/rss.tsv"
    done
  done
}

pb_teardown() {
  pb_sample_rss
  _pb_teardown_shared
}
