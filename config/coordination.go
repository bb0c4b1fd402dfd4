package config

import (
	"strings"
	"time"
)

// Coordination makes replicas of the canary one group through Kafka's
// consumer-group protocol (package canary/coord): scheduled jobs run on the
// group's leader only, markers on every replica.
type Coordination struct {
	// Enabled joins the group. Off for a single process (and the demo);
	// on in the replicated deployment.
	Enabled bool `mapstructure:"enabled"`
	// Group is the consumer group the replicas join. It only ever
	// subscribes to Topic, never to the ingest topic.
	Group string `mapstructure:"group"`
	// Topic is the coordination topic, created with one partition if it is
	// missing.
	Topic string `mapstructure:"topic"`
	// SessionTimeout is how long the broker waits for a silent replica
	// before the others go on without it: the longest a crashed leader
	// holds on to the scheduled jobs. Within the broker's
	// group.min.session.timeout.ms and group.max.session.timeout.ms.
	SessionTimeout time.Duration `mapstructure:"session_timeout"`
}

// CoordinationDefaults are the defaults of the coordination section.
func CoordinationDefaults() Coordination {
	return Coordination{
		Enabled:        false,
		Group:          "slo-canary-coordinator",
		Topic:          "slo-canary-coordination",
		SessionTimeout: 10 * time.Second,
	}
}

func (c Coordination) validate(p *problems) {
	if !c.Enabled {
		return
	}
	if strings.TrimSpace(c.Group) == "" {
		p.add("coordination.group", "must not be empty while coordination.enabled")
	}
	if strings.TrimSpace(c.Topic) == "" {
		p.add("coordination.topic", "must not be empty while coordination.enabled")
	}
	p.positive("coordination.session_timeout", c.SessionTimeout)
}
