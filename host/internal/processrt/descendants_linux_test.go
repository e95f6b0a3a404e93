package processrt

import "testing"

func TestParseStat(t *testing.T) {
	line := "4242 (a) (b c) S 17 4200 4200 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615\n"
	st, ok := parseStat(4242, []byte(line))
	if want := (procStat{pid: 4242, ppid: 17, pgrp: 4200, state: 'S', start: 987654}); !ok || st != want {
		t.Errorf("parseStat = %+v, %v; want %+v", st, ok, want)
	}
	for _, bad := range []string{"", "4242 (x", "4242 (x) S 1 2", "4242 (x) S one 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20"} {
		if _, ok := parseStat(4242, []byte(bad)); ok {
			t.Errorf("parseStat(%q) is ok", bad)
		}
	}
}
