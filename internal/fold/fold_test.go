package fold

import (
	"strings"
	"testing"
)

func TestGet(t *testing.T) {
	m := map[string]int{"objectclass": 1, "cn": 2, "straße": 3, strings.Repeat("a", 70): 4}
	for name, want := range map[string]int{
		"objectClass": 1, "OBJECTCLASS": 1, "objectclass": 1, "cn": 2, "CN": 2, "STRASSE": 0,
		"Straße": 3, strings.Repeat("A", 70): 4, "": 0, "objectClassX": 0,
	} {
		if got := Get(m, name); got != want {
			t.Errorf("Get(%q) = %d, want %d", name, got, want)
		}
	}
	if testing.AllocsPerRun(100, func() { Get(m, "objectClass") }) != 0 {
		t.Error("Get allocates for a short ASCII name")
	}
}
