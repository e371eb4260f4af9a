package proxy

import (
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
	"github.com/ldapproxy/ldapproxy/ldapserver"
)

// Metrics are the frontend's Prometheus metrics. Labels carry only the operation and the
// result code's name: never a DN or a user name.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec

	// The series each operation and result are counted in, looked up once each rather
	// than by their label values on every request: by index for the result codes of RFC
	// 4511 (and abandoned, at tableCodes), in results for any other.
	table     [ldapserver.OpExtended + 1][tableCodes + 1]atomic.Pointer[prometheus.Counter]
	results   sync.Map // resultKey → prometheus.Counter
	durations [ldapserver.OpExtended + 1]atomic.Pointer[prometheus.Observer]
}

// tableCodes is the number of result codes, from 0, counted through Metrics.table.
const tableCodes = 128

// resultKey identifies a requests_total series: the operation, and the result code, or
// abandoned (no result) above every code.
type resultKey struct {
	op   ldapserver.Op
	code uint32
}

const abandonedCode = 1 << 16

// record counts and times one request; code is abandonedCode when it got no result.
func (m *Metrics) record(op ldapserver.Op, code uint32, elapsed time.Duration) {
	m.counter(op, code).Inc()
	if int(op) >= len(m.durations) {
		m.duration.WithLabelValues(op.String()).Observe(elapsed.Seconds())
		return
	}
	o := m.durations[op].Load()
	if o == nil {
		obs := m.duration.WithLabelValues(op.String())
		o = &obs
		m.durations[op].Store(o)
	}
	(*o).Observe(elapsed.Seconds())
}

// counter is the requests_total series of op and code.
func (m *Metrics) counter(op ldapserver.Op, code uint32) prometheus.Counter {
	i := int(code)
	switch {
	case code == abandonedCode:
		i = tableCodes
	case code >= tableCodes:
		i = -1
	}
	var slot *atomic.Pointer[prometheus.Counter]
	if int(op) < len(m.table) && i >= 0 {
		slot = &m.table[op][i]
		if c := slot.Load(); c != nil {
			return *c
		}
	}
	key := resultKey{op, code}
	c, ok := m.results.Load(key)
	if !ok {
		result := "abandoned"
		if code != abandonedCode {
			result = ResultName(uint16(code))
		}
		c, _ = m.results.LoadOrStore(key, m.requests.WithLabelValues(op.String(), result))
	}
	counter := c.(prometheus.Counter)
	if slot != nil {
		slot.Store(&counter)
	}
	return counter
}

// NewMetrics registers the frontend metrics on reg. open reports the number of open
// client connections for ldapproxy_connections_open.
func NewMetrics(reg prometheus.Registerer, open func() float64) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "requests_total",
			Help: "LDAP requests answered, by operation and result code name.",
		}, []string{"op", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "request_duration_seconds",
			Help:    "Time from a request's arrival to its final response, by operation.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"op"}),
	}
	reg.MustRegister(m.requests, m.duration, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "connections_open",
		Help: "Client connections currently open.",
	}, open))
	return m
}

// instrument is the outermost handler: it counts and times each request and logs it at
// debug level, with its result. A request whose handler panicked is counted too, under
// the result the server answers it with.
func instrument(next ldapserver.Handler, m *Metrics, log *slog.Logger) ldapserver.Handler {
	return ldapserver.HandlerFunc(func(w ldapserver.ResponseWriter, r *ldapserver.Request) {
		start := time.Now()
		// The server's writer tells what was answered; any other is wrapped.
		rep, ok := w.(ldapserver.OutcomeReporter)
		if !ok {
			rec := &recorder{ResponseWriter: w}
			w, rep = rec, rec
		}
		returned := false
		defer func() {
			if returned {
				return
			}
			// The handler panicked: the server logs it and answers `other`, unless the
			// handler had answered already. The panic goes on to the server.
			code := uint32(ldap.LDAPResultOther)
			if out := rep.Outcome(); out.Answered {
				code = uint32(out.Code)
			}
			if m != nil {
				m.record(r.Op, code, time.Since(start))
			}
		}()
		next.ServeLDAP(w, r)
		returned = true
		elapsed := time.Since(start)
		out := rep.Outcome()
		code := uint32(abandonedCode)
		if out.Answered {
			code = uint32(out.Code)
		}
		if m != nil {
			m.record(r.Op, code, elapsed)
		}
		if log.Enabled(r.Context(), slog.LevelDebug) {
			result := "abandoned"
			if out.Answered {
				result = ResultName(out.Code)
			}
			logSession(log, slog.LevelDebug, r.Session, "request", "request", r, "result", result, "entries", out.Entries, "duration", elapsed)
		}
	})
}

// recorder remembers what a handler answered through a ResponseWriter that does not tell
// it (ldapserver.OutcomeReporter).
type recorder struct {
	ldapserver.ResponseWriter
	out ldapserver.Outcome
}

func (r *recorder) Outcome() ldapserver.Outcome { return r.out }

func (r *recorder) WriteEntry(e *ldapserver.Entry, controls ...ldapserver.Control) error {
	r.out.Entries++
	return r.ResponseWriter.WriteEntry(e, controls...)
}

// Relay passes an upstream response on, counting it from what was read of it where it
// arrived.
func (r *recorder) Relay(resp ldapwire.Response) error {
	switch {
	case resp.Final:
		r.out.Answered, r.out.Code = true, resp.Code
	case resp.Tag == ldapwire.TagSearchResultEntry:
		r.out.Entries++
	}
	return relay(r.ResponseWriter, resp)
}

// Detach passes ldapserver.Detach on.
func (r *recorder) Detach() { ldapserver.Detach(r.ResponseWriter) }

func (r *recorder) WriteResult(res *ldapserver.Result) error {
	r.out.Answered, r.out.Code = true, res.Code
	return r.ResponseWriter.WriteResult(res)
}

// resultNames are the RFC 4511 names of the result codes, used as metric label values.
var resultNames = map[uint16]string{
	0: "success", 1: "operationsError", 2: "protocolError", 3: "timeLimitExceeded",
	4: "sizeLimitExceeded", 5: "compareFalse", 6: "compareTrue", 7: "authMethodNotSupported",
	8: "strongerAuthRequired", 10: "referral", 11: "adminLimitExceeded",
	12: "unavailableCriticalExtension", 13: "confidentialityRequired", 14: "saslBindInProgress",
	16: "noSuchAttribute", 17: "undefinedAttributeType", 18: "inappropriateMatching",
	19: "constraintViolation", 20: "attributeOrValueExists", 21: "invalidAttributeSyntax",
	32: "noSuchObject", 33: "aliasProblem", 34: "invalidDNSyntax", 36: "aliasDereferencingProblem",
	48: "inappropriateAuthentication", 49: "invalidCredentials", 50: "insufficientAccessRights",
	51: "busy", 52: "unavailable", 53: "unwillingToPerform", 54: "loopDetect",
	64: "namingViolation", 65: "objectClassViolation", 66: "notAllowedOnNonLeaf",
	67: "notAllowedOnRDN", 68: "entryAlreadyExists", 69: "objectClassModsProhibited",
	71: "affectsMultipleDSAs", 80: "other",
}

// ResultName returns the RFC 4511 name of an LDAP result code ("invalidCredentials"), or
// "code_N" for codes outside the standard set, which keeps label values bounded.
func ResultName(code uint16) string {
	if n, ok := resultNames[code]; ok {
		return n
	}
	return "code_" + strconv.Itoa(int(code))
}
