//! The TypeScript declarations of what crosses into JS, generated from the Rust types (with
//! `ts-rs`) into `js/src/generated/core.ts`, which the JS layer imports instead of copying
//! them. A test checks that the file is current; `npm run gen:types` rewrites it.

#[cfg(test)]
mod tests {
    use std::path::Path;

    use ts_rs::{Config, TS};

    use crate::batcher::{HostBatcherOptions, Status};
    use crate::cache::{AnswerPlace, CacheStats, CompactLine};
    use crate::catalog::pricing::PriceOverride;
    use crate::fleet;
    use crate::host::batches::{BatchProgress, LiveBatch};
    use crate::host::fleet::FleetMemberConfig;
    use crate::host::jobs::{FileType, JobProvider};
    use crate::host::run_state::{JobSource, RunState, RunSummary, SourceKind};
    use crate::host::wire;
    use crate::interceptor::{
        FailCode, InterceptorOptions, LifecycleEvent, Output, QueueReport, SerializableRequest,
    };
    use crate::jobs::{
        Citation, Content, FileInput, JobResult, JobSpec, Message, ProviderEndpoint,
    };
    use crate::options::OptionError;
    use crate::providers::{HostSpec, ProviderId};
    use crate::serve::{ServeConfig, ServeDecision, ServeRefusal, ServeRoute};

    const GENERATED: &str = "../js/src/generated/core.ts";

    fn render() -> String {
        // Ids and counters stay far below 2^53: plain numbers, as the JSON carries them.
        let cfg = Config::new().with_large_int("number");
        let mut out = String::from(
            "// Generated from the Rust types of batchling-core by `npm run gen:types`\n\
             // (core/src/host/ts_types.rs). Do not edit: change the Rust type and regenerate.\n\
             /* eslint-disable */\n\n",
        );
        let decls = [
            <serde_json::Value as TS>::decl(&cfg),
            ProviderId::decl(&cfg),
            PriceOverride::decl(&cfg),
            HostSpec::decl(&cfg),
            InterceptorOptions::decl(&cfg),
            HostBatcherOptions::decl(&cfg),
            OptionError::decl(&cfg),
            FailCode::decl(&cfg),
            SerializableRequest::decl(&cfg),
            LifecycleEvent::decl(&cfg),
            AnswerPlace::decl(&cfg),
            CompactLine::decl(&cfg),
            CacheStats::decl(&cfg),
            Output::decl(&cfg),
            QueueReport::decl(&cfg),
            Status::decl(&cfg),
            Content::decl(&cfg),
            Message::decl(&cfg),
            FileInput::decl(&cfg),
            JobSpec::decl(&cfg),
            ProviderEndpoint::decl(&cfg),
            Citation::decl(&cfg),
            JobResult::decl(&cfg),
            JobProvider::decl(&cfg),
            FileType::decl(&cfg),
            SourceKind::decl(&cfg),
            JobSource::decl(&cfg),
            RunState::decl(&cfg),
            RunSummary::decl(&cfg),
            LiveBatch::decl(&cfg),
            BatchProgress::decl(&cfg),
            ServeConfig::decl(&cfg),
            ServeRoute::decl(&cfg),
            ServeRefusal::decl(&cfg),
            ServeDecision::decl(&cfg),
            FleetMemberConfig::decl(&cfg),
            crate::host::options::RedisStore::decl(&cfg),
            fleet::ClaimRef::decl(&cfg),
            fleet::Record::decl(&cfg),
            fleet::StoreAction::decl(&cfg),
            fleet::StoreOutcome::decl(&cfg),
            fleet::Event::decl(&cfg),
            fleet::Output::decl(&cfg),
        ];
        for decl in decls {
            out.push_str("export ");
            out.push_str(&decl);
            out.push_str("\n\n");
        }
        out.push_str("// The batcher's numeric outcome encoding (core/src/host/wire.rs).\n");
        for (name, value) in wire::CONSTANTS {
            out.push_str(&format!("export const {name} = {value};\n"));
        }
        out
    }

    #[test]
    fn generated_typescript_is_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(GENERATED);
        let want = render();
        if std::env::var_os("BATCHLING_WRITE_TS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &want).unwrap();
            return;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "js/src/generated/core.ts does not match the Rust types: run `npm run gen:types` and commit it"
        );
    }
}
