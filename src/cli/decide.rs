//! `kubectl fleet decide <syncrun> <choice>`: the choice at a paused rollout, written
//! as the approve annotation `<choice>:<decision id>` of the pause the run shows now, so
//! that the API server stamps who chose (as it stamps an approver).

use std::process::ExitCode;

use kube::api::{Api, Patch, PatchParams};

use super::live_plan::EXIT_CHANGES;
use crate::api::syncrun::{Phase, SyncRun};
use crate::api::{annotations, pause::RunPause};
use crate::fleet::rollout::pause::{Choice, Decision};

/// Writes `choice` for the pause `name` waits at (only that pause if `expected` names one).
pub async fn decide(
    runs: &Api<SyncRun>,
    name: &str,
    choice: Choice,
    expected: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let run = runs.get(name).await?;
    let pause = match paused_at(&run, choice, expected) {
        Ok(pause) => pause,
        Err(why) => {
            eprintln!("error: {why}");
            return Ok(ExitCode::from(EXIT_CHANGES));
        }
    };
    let decision = Decision {
        choice,
        id: pause.decision_id.clone(),
    };
    // Only the approve annotation: the API server stamps who set it.
    let patch = serde_json::json!({"metadata": {"annotations": {annotations::APPROVE: decision.subject()}}});
    runs.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let objects = pause
        .objects
        .iter()
        .take(5)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    let more = pause.objects.len().saturating_sub(5) + pause.more as usize;
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    println!(
        "syncrun/{name}: {choice} chosen at wave {} ({}: {objects}{more}); `kubectl fleet plan {name}` shows whether more people must choose it",
        pause.wave + 1,
        pause.reason
    );
    Ok(ExitCode::SUCCESS)
}

/// The pause a choice can be made at, or why not.
pub(super) fn paused_at(
    run: &SyncRun,
    choice: Choice,
    expected: Option<&str>,
) -> Result<RunPause, String> {
    let name = kube::ResourceExt::name_any(run);
    let status = run.status.as_ref();
    let pause = status
        .and_then(|s| s.rollout.as_ref())
        .and_then(|r| r.pause.clone());
    let Some(pause) = pause.filter(|_| run.phase() == Some(Phase::Paused)) else {
        let phase = run.phase().map_or("unknown", Phase::as_str);
        return Err(format!(
            "syncrun/{name} is not paused (phase {phase}): there is nothing to choose"
        ));
    };
    if let Some(expected) = expected
        && expected != pause.decision_id
    {
        return Err(format!(
            "syncrun/{name} is paused at {}, not {expected}: nothing was chosen",
            pause.decision_id
        ));
    }
    if choice == Choice::Rollback && pause.rollback_to.is_none() {
        return Err(format!(
            "syncrun/{name} offers no rollback: no earlier run of its repository applied whole"
        ));
    }
    Ok(pause)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::rollout::RunRollout;
    use crate::api::syncrun::SyncRunStatus;

    fn paused(rollback_to: Option<&str>) -> SyncRun {
        let mut run = crate::controller::fixtures::run_named("r1");
        run.status = Some(SyncRunStatus {
            phase: Some(Phase::Paused),
            rollout: Some(RunRollout {
                pause: Some(RunPause {
                    reason: "ObjectFailed".into(),
                    wave: 0,
                    objects: vec!["fleetnode/a".into()],
                    more: 0,
                    decision_id: "pause-1".into(),
                    at: crate::api::now(),
                    rollback_to: rollback_to.map(str::to_owned),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        run
    }

    #[test]
    fn a_choice_is_made_only_at_the_pause_the_run_shows() {
        assert!(paused_at(&paused(None), Choice::Continue, None).is_ok());
        assert!(paused_at(&paused(None), Choice::Continue, Some("pause-1")).is_ok());
        let other = paused_at(&paused(None), Choice::Continue, Some("pause-2")).unwrap_err();
        assert!(other.contains("paused at pause-1"), "{other}");
        let none = paused_at(&paused(None), Choice::Rollback, None).unwrap_err();
        assert!(none.contains("no rollback"), "{none}");
        assert!(paused_at(&paused(Some("r0")), Choice::Rollback, None).is_ok());
        let mut applied = paused(None);
        applied.status.as_mut().unwrap().phase = Some(Phase::Applied);
        assert!(
            paused_at(&applied, Choice::Continue, None)
                .unwrap_err()
                .contains("not paused")
        );
    }
}
