package secret

import "testing"

func TestAttribute(t *testing.T) {
	for desc, want := range map[string]bool{
		"userPassword": true, "USERPASSWORD": true, "userPassword;binary": true, "unicodePwd": true,
		"msLAPS-Password": true, "krbPrincipalKey": true, "ipaNTHash": true, "unixUserPassword": true,
		"uid": false, "": false, "userPasswordX": false, "password": false, "cn;lang-de": false,
		"userpassword" + string(rune(0x212A)): false, // a non-ASCII name is no secret type
	} {
		if got := Attribute(desc); got != want {
			t.Errorf("Attribute(%q) = %v, want %v", desc, got, want)
		}
	}
	if testing.AllocsPerRun(100, func() { Attribute("supplementalCredentials") }) != 0 {
		t.Error("Attribute allocates")
	}
}
