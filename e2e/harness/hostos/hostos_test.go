package hostos

import "testing"

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/run/a`:             "/run/a",
		`/run/with\040space`: "/run/with space",
		`/tab\011x`:          "/tab\tx",
		`/bad\09`:            `/bad\09`,
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}
