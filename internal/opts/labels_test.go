package opts

import "testing"

func TestMatchLabels(t *testing.T) {
	labels := map[string]string{"tier": "web", "empty": ""}
	for _, tt := range []struct {
		exprs []string
		want  bool
	}{
		{nil, true},
		{[]string{"tier"}, true},
		{[]string{"tier=web"}, true},
		{[]string{"tier=db"}, false},
		{[]string{"missing"}, false},
		{[]string{"empty="}, true},
		{[]string{"tier", "empty"}, true},
		{[]string{"tier", "missing"}, false},
	} {
		if got := MatchLabels(tt.exprs, labels); got != tt.want {
			t.Errorf("MatchLabels(%q) = %v, want %v", tt.exprs, got, tt.want)
		}
	}
}
