package coord

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// protocolName is the group protocol the replicas agree on. Every member of
// the coordination group must speak it: the broker refuses a member whose
// protocols share none with the group's.
const protocolName = "slo-canary-leader"

// claim is what a member tells the group when it joins (the UserData of its
// kmsg.ConsumerMemberMetadata): its canary.instance, and the generation it
// last led in, so that leadership stays where it is across rebalances that
// do not remove the leader (a replica joining or leaving must not move the
// scheduled jobs around).
type claim struct {
	Instance string `json:"instance"`
	LedGen   int32  `json:"led_gen"` // -1: did not lead in its last generation
}

// grant is what each member is given (the UserData of its
// kmsg.ConsumerMemberAssignment): the whole membership as the group leader
// balanced it, so that every member holds the same view.
type grant struct {
	Self    string   `json:"self"`   // the member id this assignment is for
	Leader  string   `json:"leader"` // the leading member's id
	Members []Member `json:"members"`
}

// balancer is a kgo.GroupBalancer that carries the membership and the
// leader's identity in the assignment. The coordination topic's partitions
// all go to the leader; nobody reads them for the membership itself.
type balancer struct {
	c *Coordinator
}

var _ kgo.GroupBalancer = (*balancer)(nil)

func (*balancer) ProtocolName() string { return protocolName }
func (*balancer) IsCooperative() bool  { return false }

// JoinGroupMetadata is a plain consumer subscription (so that kadm and every
// lag monitor read the group as subscribed to the coordination topic only)
// with the member's claim in UserData.
func (b *balancer) JoinGroupMetadata(topics []string, _ map[string][]int32, generation int32) []byte {
	cl := claim{Instance: b.c.cfg.Instance, LedGen: -1}
	if b.c.ledIn(generation) {
		cl.LedGen = generation
	}
	ud, _ := json.Marshal(cl) // a struct of a string and an int: cannot fail
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Topics = topics
	meta.UserData = ud
	return meta.AppendTo(nil)
}

// ParseSyncAssignment reads the assignment and hands the grant in it to the
// coordinator: it is this member's view of the group until the next one.
func (b *balancer) ParseSyncAssignment(assignment []byte) (map[string][]int32, error) {
	var a kmsg.ConsumerMemberAssignment
	if err := a.ReadFrom(assignment); err != nil {
		return nil, fmt.Errorf("coordination assignment: %w", err)
	}
	var g grant
	if err := json.Unmarshal(a.UserData, &g); err != nil {
		return nil, fmt.Errorf("coordination assignment user data: %w", err)
	}
	b.c.assigned(g)
	out := make(map[string][]int32, len(a.Topics))
	for _, t := range a.Topics {
		out[t.Topic] = t.Partitions
	}
	return out, nil
}

// MemberBalancer runs on the member Kafka chose as the group's leader (the
// one that balances), which is not necessarily the canary's leader.
func (b *balancer) MemberBalancer(members []kmsg.JoinGroupResponseMember) (kgo.GroupMemberBalancer, map[string]struct{}, error) {
	p := &plan{members: make([]joined, 0, len(members)), topics: map[string]struct{}{}}
	for _, m := range members {
		var meta kmsg.ConsumerMemberMetadata
		if err := meta.ReadFrom(m.ProtocolMetadata); err != nil {
			return nil, nil, fmt.Errorf("member %s: metadata: %w", m.MemberID, err)
		}
		var cl claim
		if err := json.Unmarshal(meta.UserData, &cl); err != nil {
			return nil, nil, fmt.Errorf("member %s: claim: %w", m.MemberID, err)
		}
		for _, t := range meta.Topics {
			p.topics[t] = struct{}{}
		}
		p.members = append(p.members, joined{Member: Member{ID: m.MemberID, Instance: cl.Instance}, claim: cl, topics: meta.Topics})
	}
	return p, p.topics, nil
}

type joined struct {
	Member
	claim  claim
	topics []string
}

// plan is one balance: it picks the leader and writes every member's grant.
type plan struct {
	members []joined
	topics  map[string]struct{}
}

// leaderOf picks the canary's leader deterministically: the member that led
// in the latest generation, if it is still here; otherwise the member with
// the lowest instance name (then member id).
func leaderOf(members []joined) string {
	best := -1
	for i, m := range members {
		if m.claim.LedGen < 0 {
			continue
		}
		if best < 0 || m.claim.LedGen > members[best].claim.LedGen {
			best = i
		}
	}
	if best >= 0 {
		return members[best].ID
	}
	first := slices.MinFunc(members, func(a, b joined) int {
		return cmp.Or(cmp.Compare(a.Instance, b.Instance), cmp.Compare(a.ID, b.ID))
	})
	return first.ID
}

func (p *plan) Balance(topics map[string]int32) kgo.IntoSyncAssignment {
	if len(p.members) == 0 {
		return syncAssignment(nil)
	}
	leader := leaderOf(p.members)
	all := make([]Member, len(p.members))
	for i, m := range p.members {
		all[i] = m.Member
	}
	slices.SortFunc(all, func(a, b Member) int { return cmp.Or(cmp.Compare(a.Instance, b.Instance), cmp.Compare(a.ID, b.ID)) })
	out := make(syncAssignment, 0, len(p.members))
	for _, m := range p.members {
		a := kmsg.NewConsumerMemberAssignment()
		if m.ID == leader {
			for _, t := range slices.Sorted(maps.Keys(topics)) {
				if !slices.Contains(m.topics, t) {
					continue
				}
				ps := make([]int32, topics[t])
				for i := range ps {
					ps[i] = int32(i)
				}
				a.Topics = append(a.Topics, kmsg.ConsumerMemberAssignmentTopic{Topic: t, Partitions: ps})
			}
		}
		a.UserData, _ = json.Marshal(grant{Self: m.ID, Leader: leader, Members: all})
		sa := kmsg.NewSyncGroupRequestGroupAssignment()
		sa.MemberID = m.ID
		sa.MemberAssignment = a.AppendTo(nil)
		out = append(out, sa)
	}
	return out
}

type syncAssignment []kmsg.SyncGroupRequestGroupAssignment

func (s syncAssignment) IntoSyncAssignment() []kmsg.SyncGroupRequestGroupAssignment { return s }
