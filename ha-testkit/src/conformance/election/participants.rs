//! Participants, observers and targeted hand-off of an election group: listing the
//! contenders (Curator's `getParticipants`), following the leader without contending
//! (etcd's `Observe`, client-go's `OnNewLeader`), and handing leadership to a named
//! contender (rolling upgrades), fenced like every term change.

use std::time::Duration;

use ha_core::{HaServices, JobId, Participant, DEFAULT_ELECTION_GROUP};

use super::super::util::{contend, eventually, quick};
use crate::Ctx;

fn id(ha: &HaServices) -> String {
    ha.backend().instance_id().to_string()
}

fn ids(ps: &[Participant]) -> Vec<String> {
    let mut ids: Vec<String> = ps.iter().map(|p| p.id.clone()).collect();
    ids.sort();
    ids
}

/// Every contender of the group is listed once, with exactly one leader, first; a
/// process that only reads is no contender; a resigned contender goes from the list;
/// an empty group lists nobody.
pub async fn lists_participants(ctx: Ctx) {
    let (a, b, c, reader) = (
        ctx.process().await,
        ctx.process().await,
        ctx.process().await,
        ctx.process().await,
    );
    assert!(
        reader.participants(DEFAULT_ELECTION_GROUP).await.unwrap().is_empty(),
        "nobody contends yet"
    );
    let (sa, mut ea) = contend(&a, "dispatcher").await;
    tokio::time::timeout(quick(&ctx), ea.granted())
        .await
        .expect("a granted")
        .unwrap();
    let (sb, _eb) = contend(&b, "dispatcher").await;
    let (_sc, _ec) = contend(&c, "dispatcher").await;
    let mut want = vec![id(&a), id(&b), id(&c)];
    want.sort();
    let listed = |ha: HaServices| async move { ha.participants(DEFAULT_ELECTION_GROUP).await.unwrap() };
    eventually(quick(&ctx), "every contender listed", || {
        let (r, want) = (reader.clone(), want.clone());
        async move { ids(&listed(r).await) == want }
    })
    .await;
    let ps = listed(reader.clone()).await;
    assert_eq!(ps.iter().filter(|p| p.leader).count(), 1, "one leader: {ps:?}");
    assert_eq!(
        ps[0],
        Participant {
            id: id(&a),
            leader: true
        },
        "the leader first: {ps:?}"
    );
    assert_eq!(
        ids(&sa.participants().await.unwrap()),
        want,
        "a contender lists the same"
    );
    assert!(
        reader.participants("other-group").await.unwrap().is_empty(),
        "a group nobody contends in lists nobody"
    );
    sb.close().await.unwrap();
    let mut want = vec![id(&a), id(&c)];
    want.sort();
    eventually(quick(&ctx), "a resigned contender is no longer listed", || {
        let (r, want) = (reader.clone(), want.clone());
        async move { ids(&listed(r).await) == want }
    })
    .await;
    sa.close().await.unwrap();
    eventually(quick(&ctx), "the next leader is listed as leader", || {
        let (r, c_id) = (reader.clone(), id(&c));
        async move { listed(r).await == vec![Participant { id: c_id, leader: true }] }
    })
    .await;
    for p in [a, b, c, reader] {
        p.close().await.unwrap();
    }
}

/// An observer that does not contend sees each leader in turn (no leader, then every
/// contender that leads, in the order they lead, each once, then no leader again;
/// "no leader" may show between two leaders where the backend has such a moment),
/// and never appears among the participants itself.
pub async fn observer_sees_every_leader(ctx: Ctx) {
    let watcher = ctx.process().await;
    let mut observer = watcher.leader_observer(DEFAULT_ELECTION_GROUP).await.unwrap();
    assert_eq!(observer.current(), None, "nobody leads yet");
    let mut seen = vec![observer.current()];
    let procs = [ctx.process().await, ctx.process().await, ctx.process().await];
    let mut services = Vec::new();
    for p in &procs {
        services.push(Some(contend(p, "dispatcher").await));
    }
    let mut led = Vec::new();
    for _ in 0..procs.len() {
        // The next leader, whoever the backend grants.
        let leader = tokio::time::timeout(quick(&ctx), async {
            loop {
                let now = observer.changed().await.unwrap();
                seen.push(now.clone());
                if let Some(l) = now {
                    return l;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("observer saw no next leader; saw {seen:?}"));
        let i = procs
            .iter()
            .position(|p| id(p) == leader)
            .unwrap_or_else(|| panic!("observed leader {leader} is no contender"));
        let (svc, election) = services[i]
            .take()
            .unwrap_or_else(|| panic!("observed {leader} again after it resigned; saw {seen:?}"));
        eventually(quick(&ctx), "the observed leader holds the grant", || {
            let granted = election.current().is_some();
            async move { granted }
        })
        .await;
        let listed = watcher.participants(DEFAULT_ELECTION_GROUP).await.unwrap();
        assert!(
            !listed.iter().any(|p| p.id == id(&watcher)),
            "the observer is no participant: {listed:?}"
        );
        led.push(Some(leader));
        svc.close().await.unwrap();
    }
    let gone = tokio::time::timeout(quick(&ctx), async {
        while observer.current().is_some() {
            let now = observer.changed().await.unwrap();
            seen.push(now);
        }
    })
    .await;
    assert!(gone.is_ok(), "observer never saw the group leaderless; saw {seen:?}");
    let leaders: Vec<Option<String>> = seen.iter().filter(|l| l.is_some()).cloned().collect();
    assert_eq!(leaders, led, "every leader, in order, once each; saw {seen:?}");
    assert_eq!(seen.last(), Some(&None), "ends leaderless: {seen:?}");
    for p in procs {
        p.close().await.unwrap();
    }
    watcher.close().await.unwrap();
}

/// The leader hands leadership to a named contender that is not next in line: the
/// target is granted well before any lease could run out, nobody else is granted,
/// and the old term's writes are refused from the moment the hand-off returns (also
/// by the backend itself once the new term wrote). Bad requests change nothing. The
/// old leader stays in line and can be handed leadership back, with a higher epoch.
pub async fn hand_off_to_named_participant(ctx: Ctx) {
    let (a, b, c) = (ctx.process().await, ctx.process().await, ctx.process().await);
    let (sa, mut ea) = contend(&a, "dispatcher").await;
    let ga = tokio::time::timeout(quick(&ctx), ea.granted())
        .await
        .expect("a granted")
        .unwrap();
    ea.confirm(&ga, "addr-a").await.unwrap();
    let (sb, eb) = contend(&b, "dispatcher").await;
    let (sc, mut ec) = contend(&c, "dispatcher").await;
    let job = JobId::random();
    let counter_a = a.checkpoint_id_counter(&job).await.unwrap();
    assert_eq!(counter_a.get_and_increment(&ga.fence).await.unwrap(), 1);
    eventually(quick(&ctx), "every contender listed", || {
        let sa = sa.clone();
        async move { sa.participants().await.unwrap().len() == 3 }
    })
    .await;

    // Requests that must change nothing.
    let err = sb.hand_off(&id(&c)).await.unwrap_err();
    assert!(err.is_not_leader(), "a standby cannot hand off: {err}");
    let err = sa.hand_off("no-such-participant").await.unwrap_err();
    assert!(
        matches!(err, ha_core::Error::NotFound { .. }) && err.to_string().contains("no-such-participant"),
        "unknown target: {err}"
    );
    let err = sa.hand_off(&id(&a)).await.unwrap_err();
    assert!(
        matches!(err, ha_core::Error::InvalidRequest { .. }),
        "hand-off to oneself: {err}"
    );
    assert!(ea.has_leadership(&ga), "a still leads after refused hand-offs");

    // c joined after b: the hand-off makes it jump the line.
    let started = tokio::time::Instant::now();
    sa.hand_off(&id(&c)).await.expect("hand off to c");
    assert!(!ea.has_leadership(&ga), "a stops leading when the hand-off returns");
    let err = counter_a.get_and_increment(&ga.fence).await.unwrap_err();
    assert!(
        err.is_not_leader(),
        "the old term's write right after the hand-off: {err}"
    );
    let gc = tokio::time::timeout(quick(&ctx), ec.granted())
        .await
        .expect("c granted")
        .unwrap();
    let took = started.elapsed();
    eprintln!("hand-off: target granted after {took:?}");
    let bound = ctx.crash_timeout() / 2;
    assert!(
        took < bound,
        "target granted after {took:?}: not before a lease could expire (bound {bound:?})"
    );
    assert!(gc.epoch > ga.epoch, "the target's term has a higher epoch");
    assert!(eb.current().is_none(), "b (next in line) must not be granted");

    let counter_c = c.checkpoint_id_counter(&job).await.unwrap();
    assert_eq!(counter_c.get_and_increment(&gc.fence).await.unwrap(), 2);
    // The backend refuses the old term too, whatever its local clock says.
    let stale = ha_core::Fence::new(ga.epoch, ga.fence.token.clone());
    let err = counter_a.get_and_increment(&stale).await.unwrap_err();
    assert!(
        err.is_not_leader(),
        "the old term's write after the target wrote: {err}"
    );
    assert_eq!(counter_c.get().await.unwrap(), 3, "no write of the old term landed");

    // a stays a contender, behind c; c leads.
    eventually(quick(&ctx), "a contends again behind c", || {
        let (sa, a_id, c_id) = (sa.clone(), id(&a), id(&c));
        async move {
            let ps = sa.participants().await.unwrap();
            ps.len() == 3 && ps[0].id == c_id && ps[0].leader && ps.iter().any(|p| p.id == a_id && !p.leader)
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(ea.current().is_none() && eb.current().is_none(), "only c leads");
    assert!(ec.has_leadership(&gc));

    // The old leader, back in line, can be handed leadership again: epochs keep rising.
    sc.hand_off(&id(&a)).await.expect("hand back to a");
    let ga2 = tokio::time::timeout(quick(&ctx), ea.granted())
        .await
        .expect("a granted again")
        .unwrap();
    assert!(ga2.epoch > gc.epoch, "epoch {} not above {}", ga2.epoch, gc.epoch);
    assert!(!ec.has_leadership(&gc) && eb.current().is_none());
    let err = counter_c.get_and_increment(&gc.fence).await.unwrap_err();
    assert!(err.is_not_leader(), "c's term is over: {err}");
    assert_eq!(counter_a.get_and_increment(&ga2.fence).await.unwrap(), 3);
    for p in [a, b, c] {
        p.close().await.unwrap();
    }
}
