package opcua

import (
	"strings"
	"testing"

	"github.com/gopcua/opcua/ua"
)

// TestValidateRejects checks that each mistake is reported at its line and
// column, with a message that says what is expected.
func TestValidateRejects(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string // "line:col: path: text"
	}{
		{"browse_every without roots", `type: opcua
endpoint: opc.tcp://plc:4840
nodes: [{id: "ns=2;s=T"}]
browse_every: 10m
`, []string{`4:15: browse_every: there are no browse roots to re-run`}},
		{"browse_every too short, and in poll mode", `type: opcua
endpoint: opc.tcp://plc:4840
mode: poll
browse: [{root_path: "2:Plant"}]
browse_every: 100ms
`, []string{`5:15: browse_every: 100ms is below the minimum 1s`}},
		{"malformed endpoint URL", `type: opcua
endpoint: http://plc:4840
nodes: [{id: "ns=2;s=T"}]
`, []string{`2:11: endpoint: "http://plc:4840": scheme must be opc.tcp`}},
		{"endpoint without host", `type: opcua
endpoint: "opc.tcp://:4840"
nodes: [{id: "ns=2;s=T"}]
`, []string{`2:11: endpoint: "opc.tcp://:4840" has no host`}},
		{"endpoint with a bad port", `type: opcua
endpoint: opc.tcp://plc:99999
nodes: [{id: "ns=2;s=T"}]
`, []string{`2:11: endpoint: "opc.tcp://plc:99999": port "99999"`}},
		{"malformed NodeId", `type: opcua
endpoint: opc.tcp://plc:4840
nodes:
  - id: "ns=2;s=Good"
  - id: "ns=two;s=Temp"
  - id: "ns=2;x=Temp"
browse:
  - root: "i=abc"
`, []string{
			`5:9: nodes[1].id: "ns=two;s=Temp": namespace index "two" is not a number`,
			`6:9: nodes[2].id: "ns=2;x=Temp": identifier "x=Temp" does not start with i=, s=, g= or b=`,
			`8:11: browse[0].root: "i=abc"`,
		}},
		{"unknown security policy and mode", `type: opcua
endpoint: opc.tcp://plc:4840
security:
  policy: Basic999
  mode: Encrypt
nodes: [{id: "ns=2;s=T"}]
`, []string{
			`4:11: security.policy: "Basic999" is not one of None, Basic256Sha256, Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss`,
			`5:9: security.mode: "Encrypt" is not one of None, Sign, SignAndEncrypt`,
		}},
		{"negative sampling interval", `type: opcua
endpoint: opc.tcp://plc:4840
subscription:
  sampling_interval: -100ms
nodes: [{id: "ns=2;s=T"}]
`, []string{`4:22: subscription.sampling_interval: duration -100ms is negative`}},
		{"mode None with a policy, unknown keys, no nodes", `type: opcua
endpoint: opc.tcp://plc:4840
security: {policy: Basic256Sha256, mode: None}
auth: {type: username}
mode: push
`, []string{
			`3:42: security.mode: policy Basic256Sha256 needs mode Sign or SignAndEncrypt`,
			`4:7: auth.username: missing user name`,
			`5:7: mode: "push" is not one of subscribe, poll`,
			`nodes: no nodes`,
		}},
		{"watchdog shorter than a keep-alive", `type: opcua
endpoint: opc.tcp://plc:4840
subscription: {publishing_interval: 1s, keepalive_count: 10, watchdog: 5s}
nodes: [{id: "ns=2;s=T"}]
`, []string{`3:72: subscription.watchdog: 5s is shorter than a keep-alive period`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := tryDecode(tc.yaml)
			got := errs.Error()
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("want %q in:\n%s", w, got)
				}
			}
			for _, e := range errs {
				if e.File != "ferry.yaml" || (e.Line == 0 && !strings.Contains(e.Msg, "no nodes")) {
					t.Errorf("error without a position: %v", e)
				}
			}
		})
	}
}

func TestParseNodeRef(t *testing.T) {
	for _, s := range []string{"i=85", "ns=2;s=Line1.Temp", "ns=3;i=1001", "nsu=urn:x:y;s=A/B", "ns=1;g=5eac051c-c313-43d7-b790-24fa2ab8b41a", "ns=1;b=aGVsbG8="} {
		if _, err := ParseNodeRef(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	for _, s := range []string{"", "Temp", "ns=2;Temp", "ns=;s=T", "nsu=;s=T", "ns=2;s=", "ns=2;i=x", "ns=70000;i=1", "x=2;s=T"} {
		if _, err := ParseNodeRef(s); err == nil {
			t.Errorf("%q parsed", s)
		}
	}
	ref, _ := ParseNodeRef("nsu=urn:b;s=T")
	id, err := ref.Resolve([]string{"http://opcfoundation.org/UA/", "urn:a", "urn:b"})
	if err != nil || id.String() != "ns=2;s=T" {
		t.Errorf("resolve: %v %v", id, err)
	}
	if _, err := ref.Resolve([]string{"urn:a"}); err == nil {
		t.Error("resolved against a namespace array without the URI")
	}
}

func TestSelectEndpoint(t *testing.T) {
	tok := func(ts ...ua.UserTokenType) []*ua.UserTokenPolicy {
		var out []*ua.UserTokenPolicy
		for _, t := range ts {
			out = append(out, &ua.UserTokenPolicy{TokenType: t})
		}
		return out
	}
	eps := []*ua.EndpointDescription{
		{SecurityPolicyURI: ua.SecurityPolicyURINone, SecurityMode: ua.MessageSecurityModeNone, SecurityLevel: 0, UserIdentityTokens: tok(ua.UserTokenTypeAnonymous)},
		{SecurityPolicyURI: ua.SecurityPolicyURIBasic256Sha256, SecurityMode: ua.MessageSecurityModeSign, SecurityLevel: 5, UserIdentityTokens: tok(ua.UserTokenTypeAnonymous, ua.UserTokenTypeUserName)},
		{SecurityPolicyURI: ua.SecurityPolicyURIBasic256Sha256, SecurityMode: ua.MessageSecurityModeSignAndEncrypt, SecurityLevel: 10, UserIdentityTokens: tok(ua.UserTokenTypeUserName)},
	}
	if ep, err := selectEndpoint(eps, "Basic256Sha256", "Sign", ua.UserTokenTypeAnonymous); err != nil || ep != eps[1] {
		t.Errorf("Sign: %v %v", ep, err)
	}
	if ep, err := selectEndpoint(eps, "auto", "SignAndEncrypt", ua.UserTokenTypeUserName); err != nil || ep != eps[2] {
		t.Errorf("auto: %v %v", ep, err)
	}
	_, err := selectEndpoint(eps, "Basic256Sha256", "SignAndEncrypt", ua.UserTokenTypeAnonymous)
	if err == nil || !strings.Contains(err.Error(), "Basic256Sha256/SignAndEncrypt (username)") {
		t.Errorf("no match should list what is offered: %v", err)
	}
}
