package mqtt

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-gateway/ferry/internal/conf"
)

// Presets are the known IoT hubs.
var Presets = []string{"azure-iot-hub", "aws-iot-core"}

const (
	presetAzure = "azure-iot-hub"
	presetAWS   = "aws-iot-core"

	// azureAPIVersion goes in the username; IoT Hub needs one.
	azureAPIVersion = "2021-04-12"
	// azureMaxMessage is IoT Hub's device-to-cloud message limit.
	azureMaxMessage = 256 << 10
	// awsMaxPayload is AWS IoT Core's publish payload limit.
	awsMaxPayload = 128 << 10
	// renewShare: a SAS token is replaced after this share of its life,
	// so a slow reconnect still happens before the hub refuses it.
	renewShare = 0.8
)

// azureDevice is what a device connection string says.
type azureDevice struct {
	host, deviceID, moduleID string
	keyName                  string // SharedAccessKeyName, for a hub-level policy key
	key                      []byte
}

// parseAzure reads "HostName=…;DeviceId=…;SharedAccessKey=…" (ModuleId and
// SharedAccessKeyName optional).
func parseAzure(s string) (*azureDevice, error) {
	d := &azureDevice{}
	var key string
	for part := range strings.SplitSeq(s, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			if part == "" {
				continue
			}
			return nil, fmt.Errorf("%q is not Key=Value", part)
		}
		switch k {
		case "HostName":
			d.host = v
		case "DeviceId":
			d.deviceID = v
		case "ModuleId":
			d.moduleID = v
		case "SharedAccessKey":
			key = v
		case "SharedAccessKeyName":
			d.keyName = v
		case "GatewayHostName":
			// Through an IoT Edge gateway: connect there, sign for the hub.
		case "x509":
			return nil, errors.New("x509=true connection strings are not supported: use aws-iot-core style tls.cert_file/key_file without a preset")
		default:
			return nil, fmt.Errorf("unknown key %q (expected HostName, DeviceId, ModuleId, SharedAccessKey)", k)
		}
	}
	var missing []string
	for _, f := range []struct{ name, v string }{{"HostName", d.host}, {"DeviceId", d.deviceID}, {"SharedAccessKey", key}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing %s", strings.Join(missing, ", "))
	}
	k, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		return nil, fmt.Errorf("SharedAccessKey is not base64: %w", err)
	}
	d.key = k
	return d, nil
}

// clientID is the MQTT client id IoT Hub requires.
func (d *azureDevice) clientID() string {
	if d.moduleID != "" {
		return d.deviceID + "/" + d.moduleID
	}
	return d.deviceID
}

func (d *azureDevice) resource() string {
	r := d.host + "/devices/" + d.deviceID
	if d.moduleID != "" {
		r += "/modules/" + d.moduleID
	}
	return r
}

func (d *azureDevice) username() string {
	return d.host + "/" + d.clientID() + "/?api-version=" + azureAPIVersion
}

// eventsTopic is the device-to-cloud topic; message properties follow it
// as a URL-encoded property bag.
func (d *azureDevice) eventsTopic() string {
	if d.moduleID != "" {
		return "devices/" + d.deviceID + "/modules/" + d.moduleID + "/messages/events/"
	}
	return "devices/" + d.deviceID + "/messages/events/"
}

// sasToken signs the resource until expiry, as IoT Hub checks it:
// HMAC-SHA256 of "<url-encoded resource>\n<expiry>" with the device key.
func (d *azureDevice) sasToken(expiry time.Time) string {
	sr := url.QueryEscape(d.resource())
	se := strconv.FormatInt(expiry.Unix(), 10)
	mac := hmac.New(sha256.New, d.key)
	mac.Write([]byte(sr + "\n" + se))
	sig := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	tok := "SharedAccessSignature sr=" + sr + "&sig=" + url.QueryEscape(sig) + "&se=" + se
	if d.keyName != "" {
		tok += "&skn=" + url.QueryEscape(d.keyName)
	}
	return tok
}

// presetDefaults fills what a preset derives; it runs before the other
// defaults, and what the file set explicitly stays (Validate says where
// it contradicts the preset).
func (c *Config) presetDefaults() {
	switch c.Preset {
	case presetAzure:
		c.azure, c.azureErr = parseAzure(c.ConnectionString)
		if c.TokenTTL == 0 {
			c.TokenTTL = conf.Duration(time.Hour)
		}
		if c.MaxPayload == 0 {
			c.MaxPayload = azureMaxMessage
		}
		if c.Version == "" {
			c.Version = "3.1.1" // IoT Hub's MQTT endpoint
		}
		d := c.azure
		if d == nil {
			return
		}
		if c.URL == "" {
			c.URL = "mqtts://" + d.host + ":8883"
		}
		if c.ClientID == "" {
			c.ClientID = d.clientID()
		}
		if c.Username == "" {
			c.Username = d.username()
		}
		if c.Topic == "" {
			c.Topic = d.eventsTopic()
		}
		if c.Commands == nil {
			c.Commands = &Commands{}
		}
		if c.Commands.Topic == "" {
			// Cloud-to-device messages: the topic ends in the message's
			// property bag, so the payload names device and tag.
			c.Commands.Topic = "devices/" + d.deviceID + "/messages/devicebound/#"
			c.Commands.fromPayload = true
		}
		if c.Commands.Results == "" {
			c.Commands.Results = d.eventsTopic()
		}
	case presetAWS:
		if c.MaxPayload == 0 {
			c.MaxPayload = awsMaxPayload
		}
	}
}

// validatePreset checks what a preset needs and what contradicts it.
func (c *Config) validatePreset(add func(path, format string, args ...any)) {
	switch c.Preset {
	case "":
		if c.ConnectionString != "" {
			add("connection_string", "only with preset: %s", presetAzure)
		}
	case presetAzure:
		if c.azureErr != nil {
			add("connection_string", "not an IoT Hub device connection string: %v", c.azureErr)
			return
		}
		if c.Password != "" {
			add("password", "set by preset %s (a SAS token made from connection_string); leave it out", presetAzure)
		}
		if c.Version != "3.1.1" {
			add("version", "IoT Hub speaks MQTT 3.1.1; leave version out with preset %s", presetAzure)
		}
		if !strings.HasPrefix(c.Topic, c.azure.eventsTopic()) {
			add("topic", "IoT Hub takes device-to-cloud messages only on %s (and its property bag)", c.azure.eventsTopic())
		}
		if c.TokenTTL.D() < 2*time.Second {
			add("token_ttl", "%v is too short: a SAS token must outlive a connect", c.TokenTTL.D())
		}
		if c.MaxPayload > azureMaxMessage {
			add("max_payload", "IoT Hub takes messages up to %d bytes", azureMaxMessage)
		}
	case presetAWS:
		if c.TLS.CertFile == "" || c.TLS.KeyFile == "" {
			add("tls", "preset %s authenticates with an X.509 client certificate: set tls.cert_file and tls.key_file", presetAWS)
		}
		if !c.secure() {
			add("url", "preset %s needs a TLS URL: mqtts://<prefix>-ats.iot.<region>.amazonaws.com:8883", presetAWS)
		}
		if c.Username != "" || c.Password != "" {
			add("password", "preset %s uses the client certificate, not a username and password", presetAWS)
		}
		if c.MaxPayload > awsMaxPayload {
			add("max_payload", "AWS IoT Core takes payloads up to %d bytes", awsMaxPayload)
		}
	default:
		add("preset", "%q is not one of %s", c.Preset, strings.Join(Presets, ", "))
	}
	if c.Preset != presetAzure {
		if c.TokenTTL != 0 {
			add("token_ttl", "only with preset: %s", presetAzure)
		}
	}
}

// credentials returns the username and password for the next connection
// and when to replace them (zero: never).
func (m *MQTT) credentials() (creds, time.Time) {
	if m.azure == nil {
		return creds{m.Username, m.Password}, time.Time{}
	}
	ttl := m.TokenTTL.D()
	now := time.Now()
	// se has whole seconds; round up so the token lives at least ttl.
	exp := now.Add(ttl).Truncate(time.Second).Add(time.Second)
	return creds{m.Username, m.azure.sasToken(exp)}, now.Add(time.Duration(float64(ttl) * renewShare))
}

// azureBag is the property bag IoT Hub reads from the end of a
// device-to-cloud topic: system properties $.ct (content type) and $.ce
// (content encoding, a charset to the hub), and ferry's own. Values are
// URL-encoded; the keys need no encoding.
func azureBag(p props, kind string) string {
	var parts []string
	add := func(k, v string) { parts = append(parts, k+"="+url.QueryEscape(v)) }
	if p.contentType != "" {
		add("$.ct", p.contentType)
	}
	if p.encoding == "" && strings.Contains(p.contentType, "json") {
		add("$.ce", "utf-8")
	}
	if p.schema != "" {
		add("ferry-schema", p.schema)
	}
	if p.encoding != "" {
		add("content-encoding", p.encoding)
	}
	if kind != "" {
		add("ferry-kind", kind)
	}
	return strings.Join(parts, "&")
}
