package probes_test

import (
	"context"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/probes"
)

func TestRegistry(t *testing.T) {
	if got := strings.Join(probes.Types(), ","); got != "kafka,sql" {
		t.Fatalf("types %q", got)
	}
	ctx := context.Background()

	_, err := probes.New(ctx, "api", config.Observer{Type: "http"}, probes.Deps{})
	if err == nil || !strings.Contains(err.Error(), `observer "api": unknown type "http" (known: kafka, sql)`) {
		t.Fatalf("unknown type: %v", err)
	}

	// Neither constructor touches the network: no database or cluster is needed.
	sqlObs, err := probes.New(ctx, "db", config.Observer{Type: "sql", BatchSize: 10,
		SQL: config.SQLObserver{DSN: "postgres://canary@127.0.0.1:1/x"}}, probes.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer sqlObs.Close()
	if _, ok := sqlObs.(*probes.SQL); !ok || sqlObs.Stage() != "db" {
		t.Fatalf("sql: %T %q", sqlObs, sqlObs.Stage())
	}
	if _, ok := sqlObs.(probes.Runner); ok {
		t.Error("the SQL observer has no background work, yet is a Runner")
	}

	kObs, err := probes.New(ctx, "capsules", config.Observer{Type: "kafka",
		Kafka: config.KafkaObserver{Topic: "capsule-events", Extract: "json", Field: "sample_event_ids"}},
		probes.Deps{KafkaOpts: []kgo.Opt{kgo.SeedBrokers("127.0.0.1:1")}})
	if err != nil {
		t.Fatal(err)
	}
	defer kObs.Close()
	if _, ok := kObs.(probes.Runner); !ok {
		t.Error("the Kafka observer is not a Runner")
	}
	for _, o := range []probes.Observer{sqlObs, kObs} {
		if _, ok := o.(probes.StatsReporter); !ok {
			t.Errorf("%T does not report stats", o)
		}
	}

	o, err := probes.New(ctx, "bad", config.Observer{Type: "sql", SQL: config.SQLObserver{DSN: "postgres://x:y@host:notaport/db"}}, probes.Deps{})
	if err == nil || !strings.Contains(err.Error(), `sql observer "bad"`) || strings.Contains(err.Error(), ":y@") {
		t.Fatalf("bad DSN: %v (must name the observer and hide the password)", err)
	}
	if o != nil {
		t.Fatalf("a failed constructor returned %#v, not a nil Observer", o)
	}
}
