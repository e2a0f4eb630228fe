//! The provider calls that move a job through its states (see [`super::job`]): which call a
//! state sends, what its answer moves the job to, and how a failed call is retried.

use std::collections::HashMap;
use std::sync::Arc;

use crate::cache::{self, BatchPlace, CacheRecord};
use crate::http::{HttpRequest, HttpResponse};
use crate::providers::{
    self, adapter, BatchItem, EndKind, LostCreateKey, PollReport, PollState, Route,
};

use super::io::{CallId, FailCode, LifecycleEvent, Output};
use super::job::{BatchJob, Call, CreateOrigin, JobId, JobState, Reading, Retry, REDOWNLOADS};
use super::lines::{self, Skipped};
use super::Interceptor;

impl Interceptor {
    /// A part passed admission: make its job and send its first call (or, in a dry run, answer
    /// every caller with the endpoint's synthetic response).
    pub(super) fn launch_job(&mut self, now_ms: u64, route: Route, fingerprints: Vec<String>) {
        let id = self.next_job;
        self.next_job += 1;
        let tag = self.new_tag();
        self.report.count_batch(&route);
        let estimated_usd = self.estimate_batch_usd(&route, &fingerprints);
        let tokens = self.request_tokens(&route, &fingerprints).iter().sum();
        // The body moves from the entry to the job: one copy per request, dropped once the
        // provider has it (a journalled job that must be queued again gives it back). Where a
        // request that does not run may be resubmitted, the entry keeps it too.
        let keep = self.keeps_bodies();
        let items: Vec<BatchItem> = fingerprints
            .iter()
            .map(|fp| BatchItem {
                custom_id: cache::custom_id(fp),
                body: self
                    .entries
                    .get_mut(fp)
                    .map(|entry| match keep {
                        true => entry.body.clone(),
                        false => std::mem::take(&mut entry.body),
                    })
                    .unwrap_or_default(),
            })
            .collect();
        self.event(LifecycleEvent::BatchSubmitting {
            job: id,
            provider: route.provider,
            model: route.model.clone(),
            requests: fingerprints.len(),
            dry_run: self.config.dry_run,
            estimated_usd,
        });
        if self.config.dry_run {
            // Each answer has the shape of its own request (an embeddings call gets a vector per
            // input it sent): the route carries that request's body while it is answered.
            let adapter = adapter(route.provider);
            let mut route = route;
            for (fp, item) in fingerprints.iter().zip(items) {
                route.body = item.body;
                let response = adapter.dry_run_response(&route, &item.custom_id);
                self.answer_entry(fp, response, false);
            }
            return;
        }
        let mut job = BatchJob::new(id, route, tag, fingerprints, JobState::Uploading { items });
        job.tokens = tokens;
        if self.in_fleet() {
            // The member writes the intent first, and gives the batch its tag.
            return self.fleet_cut(now_ms, job);
        }
        if let Some(record) = self.intent_record(&job) {
            self.persist(record);
        }
        self.jobs.insert(id, job);
        // Inline providers have no upload: `send_call` goes straight on to the create.
        self.send_call(now_ms, id, Call::Upload);
    }

    fn place(job: &BatchJob) -> BatchPlace {
        BatchPlace {
            provider: job.route.provider,
            base_url: job.route.base_url.clone(),
            endpoint: job.route.endpoint.clone(),
            model: job.route.model.clone(),
            tag: job.tag.clone(),
            uploaded_file: match adapter(job.route.provider).lost_create_key() {
                LostCreateKey::Tag => None,
                LostCreateKey::UploadedFile => job.uploaded_file().map(str::to_string),
            },
        }
    }

    /// The journal line saying a create is about to be sent, with what a later run looks the
    /// batch up by; `None` without a cache, or while that key is not known (a key that comes
    /// with the upload is journalled once the upload is done: see `LostCreateKey`).
    fn intent_record(&self, job: &BatchJob) -> Option<CacheRecord> {
        (self.caching && Self::find_key(job).is_some()).then(|| CacheRecord::Intent {
            place: Self::place(job),
            fingerprints: job.fingerprints.clone(),
        })
    }

    /// The listing that finds the job's batch after a lost create, if its adapter can tell.
    fn find_request(job: &BatchJob) -> Option<HttpRequest> {
        Self::find_key(job)?;
        adapter(job.route.provider).build_find(&job.context())
    }

    /// What the listing of [`Self::find_request`] is searched for (see `LostCreateKey`); `None`
    /// while that key is not known (no file uploaded yet).
    fn find_key(job: &BatchJob) -> Option<&str> {
        match adapter(job.route.provider).lost_create_key() {
            LostCreateKey::Tag => Some(&job.tag),
            LostCreateKey::UploadedFile => job.uploaded_file(),
        }
    }

    /// Send `call` for the job, or, when the adapter has no request for it, take the step that
    /// stands for it (no upload: create; a single-request upload: create; no after-create call
    /// left: submitted; no way to look a lost create up: fail as ambiguous).
    pub(super) fn send_call(&mut self, now_ms: u64, job_id: JobId, call: Call) {
        let Some(job) = self.jobs.get(&job_id) else {
            return;
        };
        let adapter = adapter(job.route.provider);
        let ctx = job.context();
        let http = match (&call, &job.state) {
            (Call::Upload, JobState::Uploading { items }) => adapter.build_upload(&ctx, items),
            (
                Call::UploadFinish,
                JobState::FinishingUpload {
                    items,
                    upload_answer,
                    ..
                },
            ) => adapter.build_upload_finish(&ctx, items, upload_answer),
            (Call::Create, JobState::Creating { .. })
                if job.send_by_ms.is_some_and(|by| now_ms > by) =>
            {
                // Fleet mode: too late to be sure every claim is still ours; never sent.
                return self.fleet_create_lost(now_ms, job_id);
            }
            (Call::Create, JobState::Creating { items, file }) => {
                Some(adapter.build_create(&ctx, items, file.as_deref()))
            }
            (Call::Find, JobState::Finding { .. }) => Self::find_request(job),
            (Call::AfterCreate, JobState::AddingRequests { calls, .. }) => calls.front().cloned(),
            (Call::Poll, JobState::Polling { batch_id, .. }) => {
                Some(adapter.build_poll(&ctx, batch_id))
            }
            (Call::Download(file), JobState::Downloading { .. }) => {
                Some(adapter.build_download(&ctx, file))
            }
            (call, state) => {
                debug_assert!(false, "call {call:?} due in state {state:?}");
                return;
            }
        };
        let Some(http) = http else {
            return match call {
                Call::Find => {
                    // No way to tag a batch with this provider: whether the lost create went
                    // through cannot be known, and guessing could pay twice. Tell the callers.
                    let message = format!(
                        "the {} batch create for tag {} was sent but its answer was lost, and {} batches \
                         carry no tag to look it up by; check the provider console, then delete the cache \
                         file (or run with --no-cache) to submit again",
                        job.route.provider, job.tag, job.route.provider
                    );
                    self.fail_job(job_id, FailCode::AmbiguousCreate, message)
                }
                // The upload was a single request, or there is none (inline providers).
                Call::Upload | Call::UploadFinish => self.upload_done(now_ms, job_id),
                Call::AfterCreate => self.submitted(now_ms, job_id),
                // Create, poll and download always have their request.
                _ => unreachable!("no request for call {call:?}"),
            };
        };
        // A results file of lines comes in chunks as it arrives (see `on_response_chunk`).
        let stream =
            (matches!(call, Call::Download(_)) && adapter.streams_results()).then_some("lines");
        let id = self.next_call;
        self.next_call += 1;
        self.calls.insert(id, (job_id, call));
        self.outputs.push(Output::Send {
            call: id,
            http: http.into(),
            stream,
        });
    }

    /// Send the polls and retries that are due.
    pub(super) fn run_timers(&mut self, now_ms: u64) {
        let due: Vec<(JobId, Vec<Call>)> = self
            .jobs
            .values_mut()
            .filter(|j| j.next_deadline().is_some_and(|t| t <= now_ms))
            .map(|j| (j.id, j.take_due(now_ms)))
            .collect();
        for (id, calls) in due {
            for call in calls {
                self.send_call(now_ms, id, call);
            }
        }
    }

    /// Whole lines of a results file still being downloaded (`stream: "lines"`): read them and
    /// answer their callers now. Line numbers count on from the call's earlier chunks. A chunk
    /// for a call that is not such a download (or no longer open) is ignored.
    pub(super) fn on_response_chunk(&mut self, call: CallId, text: &str) {
        let Some((job_id, Call::Download(_))) = self.calls.get(&call) else {
            return;
        };
        let job_id = *job_id;
        let Some(job) = self.jobs.get(&job_id) else {
            return;
        };
        let adapter = adapter(job.route.provider);
        if !adapter.streams_results() {
            return;
        }
        let batch_id = job.batch_id().unwrap_or_default();
        let mut parsed = adapter.parse_results(batch_id, text);
        let lines_before = self.streamed_lines.entry(call).or_default();
        for bad in &mut parsed.malformed {
            bad.line_number += *lines_before;
        }
        *lines_before += text.bytes().filter(|&b| b == b'\n').count();
        self.absorb_results(job_id, Some(call), parsed);
    }

    pub(super) fn on_response(&mut self, now_ms: u64, call: CallId, response: HttpResponse) {
        if (200..300).contains(&response.status)
            && self.file_deleted(call, Some(response.status), "")
        {
            return;
        }
        // An upload may answer with a redirect to where its bytes go (Together's presigned
        // upload): the adapter reads it.
        let upload_redirect = (300..400).contains(&response.status)
            && matches!(self.calls.get(&call), Some((_, Call::Upload)));
        if !(200..300).contains(&response.status) && !upload_redirect {
            let reason = format!(
                "HTTP {}: {}",
                response.status,
                providers::describe_error(&response)
            );
            return self.on_call_failure(now_ms, call, Some(response), reason);
        }
        // The lines of this call's earlier chunks, if it came in chunks.
        let lines_before = self.streamed_lines.remove(&call).unwrap_or(0);
        let call_id = call;
        let Some((job_id, call)) = self.calls.remove(&call) else {
            return;
        };
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return;
        };
        if call != Call::Find {
            job.attempts = 0; // a lookup is part of retrying the create, not progress
        }
        let adapter = adapter(job.route.provider);
        match call {
            Call::Upload => match adapter.parse_upload(&response) {
                Ok(file) => {
                    let JobState::Uploading { items } = &mut job.state else {
                        return debug_assert!(false, "upload answered outside Uploading");
                    };
                    job.state = JobState::FinishingUpload {
                        items: std::mem::take(items),
                        file,
                        upload_answer: response,
                    };
                    self.send_call(now_ms, job_id, Call::UploadFinish);
                }
                Err(e) => self.protocol_failure(job_id, &call, e.message),
            },
            Call::UploadFinish => match adapter.parse_upload_finish(&response) {
                Ok(named) => {
                    if let (Some(name), JobState::FinishingUpload { file, .. }) =
                        (named, &mut job.state)
                    {
                        *file = name;
                    }
                    self.upload_done(now_ms, job_id)
                }
                Err(e) => self.protocol_failure(job_id, &call, e.message),
            },
            Call::Create => match adapter.parse_create(&response) {
                Ok(remote) if job.fleet => {
                    let tag = job.tag.clone();
                    let batch_id = remote.id.clone();
                    self.created(now_ms, job_id, remote.id);
                    let event = crate::fleet::Event::BatchCreated { tag, batch_id };
                    self.fleet_event(now_ms, event);
                }
                Ok(remote) => self.created(now_ms, job_id, remote.id),
                Err(e) => self.protocol_failure(job_id, &call, e.message),
            },
            Call::Find if job.fleet => {
                match adapter.parse_find(&response, Self::find_key(job).unwrap_or_default()) {
                    Ok(found) => self.fleet_found(now_ms, job_id, found.map(|r| r.id)),
                    Err(e) => self.protocol_failure(job_id, &call, e.message),
                }
            }
            Call::Find => {
                match adapter.parse_find(&response, Self::find_key(job).unwrap_or_default()) {
                    Ok(Some(remote)) => self.created(now_ms, job_id, remote.id),
                    Ok(None) => self.not_found(now_ms, job_id),
                    Err(e) => self.protocol_failure(job_id, &call, e.message),
                }
            }
            Call::AfterCreate => {
                if let JobState::AddingRequests { calls, .. } = &mut job.state {
                    calls.pop_front();
                }
                self.after_create_step(now_ms, job_id);
            }
            Call::Poll => match adapter.parse_poll(&response, &job.custom_ids) {
                Ok(report) => self.polled(now_ms, job_id, report),
                Err(e) => self.protocol_failure(job_id, &call, e.message),
            },
            Call::Download(_) => {
                let batch_id = job.batch_id().unwrap_or_default().to_string();
                let mut parsed = adapter.parse_results(&batch_id, &response.body);
                for bad in &mut parsed.malformed {
                    bad.line_number += lines_before;
                }
                let next = adapter.next_download(&batch_id, &response.body);
                self.absorb_results(job_id, Some(call_id), parsed);
                self.download_call_done(job_id, call_id);
                if let Some(next) = next {
                    // A paged listing: this download goes on with its next page.
                    return self.send_call(now_ms, job_id, Call::Download(next));
                }
                let job = self.jobs.get_mut(&job_id).expect("job still open");
                let JobState::Downloading { downloads_left, .. } = &mut job.state else {
                    return debug_assert!(false, "download answered outside Downloading");
                };
                *downloads_left = downloads_left.saturating_sub(1);
                if *downloads_left == 0 {
                    self.downloads_done(now_ms, job_id);
                }
            }
        }
    }

    /// The upload is done (or there was none): journal the intent if its key came with the
    /// upload, then create.
    fn upload_done(&mut self, now_ms: u64, job_id: JobId) {
        let job = self.jobs.get_mut(&job_id).expect("job exists");
        job.state = match std::mem::replace(&mut job.state, JobState::Uploading { items: vec![] }) {
            JobState::Uploading { items } => JobState::Creating { items, file: None },
            JobState::FinishingUpload { items, file, .. } => JobState::Creating {
                items,
                file: Some(file),
            },
            state => unreachable!("upload done in state {state:?}"),
        };
        if let JobState::Creating {
            file: Some(file), ..
        } = &job.state
        {
            job.provider_files.push(file.clone());
        }
        // A key that comes with the upload is known now: journal the intent with it.
        let job = &self.jobs[&job_id];
        let by_file = adapter(job.route.provider).lost_create_key() == LostCreateKey::UploadedFile;
        if let Some(record) = by_file.then(|| self.intent_record(job)).flatten() {
            self.persist(record);
        }
        self.send_call(now_ms, job_id, Call::Create);
    }

    /// The batch exists (created, or found by its key): make the adapter's after-create calls,
    /// with the bodies the job still holds, then start polling.
    pub(super) fn created(&mut self, now_ms: u64, job_id: JobId, batch_id: String) {
        let entries_keep = self.keeps_bodies();
        let job = self.jobs.get_mut(&job_id).expect("job exists");
        let adapter = adapter(job.route.provider);
        let calls = adapter.build_after_create(&job.context(), job.items(), &batch_id);
        // The provider has the bodies now, or the calls above do; they are kept only while it
        // may still refuse the batch for its enqueued-token limit, and then by the job only
        // where the entries do not keep them anyway (to resubmit lines that did not run).
        if adapter.may_refuse_enqueued(None) && !entries_keep {
            job.held = job.take_items();
        }
        job.state = JobState::AddingRequests {
            batch_id,
            calls: calls.into(),
        };
        self.after_create_step(now_ms, job_id);
    }

    /// The next after-create call, or, when none is left, the batch is submitted.
    fn after_create_step(&mut self, now_ms: u64, job_id: JobId) {
        let done = matches!(&self.jobs[&job_id].state,
            JobState::AddingRequests { calls, .. } if calls.is_empty());
        if done {
            self.submitted(now_ms, job_id);
        } else {
            self.send_call(now_ms, job_id, Call::AfterCreate);
        }
    }

    /// The batch holds every request: journal it and start polling. Journalled only now, so a
    /// crash between a create and its after-create calls leaves an intent, and the next run
    /// finds the batch by its tag and makes the calls again instead of polling a batch that
    /// does not hold its requests.
    fn submitted(&mut self, now_ms: u64, job_id: JobId) {
        let job = self.jobs.get_mut(&job_id).expect("job exists");
        let batch_id = job
            .batch_id()
            .expect("a submitted batch has its id")
            .to_string();
        job.state = JobState::Polling {
            batch_id: batch_id.clone(),
            next_poll_ms: Some(now_ms + self.config.poll_interval_ms),
        };
        job.progress_origin = Some((now_ms, 0));
        let event = LifecycleEvent::BatchSubmitted {
            job: job_id,
            provider: job.route.provider,
            batch_id: batch_id.clone(),
            requests: job.fingerprints.len(),
        };
        let record = CacheRecord::Submitted {
            place: Self::place(job),
            batch_id,
            fingerprints: job.fingerprints.clone(),
            at_ms: self.config.wall_clock.map(|clock| clock.at(now_ms)),
        };
        if self.caching {
            self.persist(record);
        }
        self.event(event);
    }

    /// The lookup found no batch: this run's create did not reach the provider (create again,
    /// within the same job, so its attempts keep counting towards `call_attempts`), or a
    /// previous run's never did (queue its requests anew).
    fn not_found(&mut self, now_ms: u64, job_id: JobId) {
        let job = self.jobs.get_mut(&job_id).expect("job exists");
        let JobState::Finding {
            items,
            file,
            origin,
        } = &mut job.state
        else {
            return debug_assert!(false, "not found outside Finding");
        };
        if *origin == CreateOrigin::ThisRun {
            job.state = JobState::Creating {
                items: std::mem::take(items),
                file: file.take(),
            };
            return self.send_call(now_ms, job_id, Call::Create);
        }
        let mut job = self.jobs.remove(&job_id).expect("job exists");
        // The bodies are in the job's items, not in the entries: queue each with its own.
        let mut bodies: HashMap<String, serde_json::Value> = match &mut job.state {
            JobState::Finding { items, .. } => std::mem::take(items)
                .into_iter()
                .map(|item| (item.custom_id, item.body))
                .collect(),
            _ => HashMap::new(),
        };
        for fp in job.fingerprints {
            self.cache.forget_intent(&fp);
            if let Some(entry) = self.entries.remove(&fp) {
                let mut route = Route::clone(&entry.route);
                route.body = bodies.remove(&cache::custom_id(&fp)).unwrap_or(entry.body);
                let mut waiters = entry.waiters.into_iter();
                if let Some(first) = waiters.next() {
                    self.enqueue(now_ms, first, fp.clone(), route);
                    if let Some(e) = self.entries.get_mut(&fp) {
                        e.waiters.extend(waiters);
                    }
                }
            }
        }
    }

    fn polled(&mut self, now_ms: u64, job_id: JobId, report: PollReport) {
        let job = self.jobs.get_mut(&job_id).expect("job exists");
        let batch_id = job.batch_id().unwrap_or_default().to_string();
        let done = report.completed + report.failed;
        let origin = *job.progress_origin.get_or_insert((now_ms, done));
        let eta_ms = eta_ms(origin, (now_ms, done), report.total);
        self.outputs.push(Output::Event {
            event: LifecycleEvent::BatchPolled {
                job: job_id,
                batch_id: batch_id.clone(),
                state: report.state_label.clone(),
                total: report.total,
                completed: report.completed,
                failed: report.failed,
                eta_ms,
            },
        });
        if !job.held.is_empty()
            && !matches!(report.state, PollState::OverEnqueuedLimit { .. })
            && !adapter(job.route.provider).may_refuse_enqueued(Some(&report.state_label))
        {
            job.held = Vec::new(); // past the enqueued-token check: the bodies are not needed
        }
        let state = match report.state {
            // Fleet mode: a refusal for the enqueued-token limit is not waited out and created
            // again (yet): the batch is answered as failed, and its requests released.
            PollState::OverEnqueuedLimit { message, .. } if job.fleet => PollState::Ended {
                kind: EndKind::Failed,
                message,
            },
            state => state,
        };
        match state {
            PollState::Running => {
                job.state = JobState::Polling {
                    batch_id,
                    next_poll_ms: Some(now_ms + self.config.poll_interval_ms),
                };
            }
            PollState::Completed { downloads, inline } => {
                job.provider_files.extend(downloads.iter().cloned());
                job.state = JobState::Downloading {
                    batch_id: batch_id.clone(),
                    downloads_left: downloads.len(),
                    end_kind: report.end_kind_if_partial,
                    unclaimed: HashMap::new(),
                    reading: Box::new(Reading {
                        downloads: downloads.clone(),
                        lines_ran: report.completed + report.failed,
                        redownloads_left: REDOWNLOADS,
                        ..Reading::default()
                    }),
                };
                self.event(LifecycleEvent::BatchFinished {
                    job: job_id,
                    batch_id,
                    state: report.state_label,
                });
                if let Some(parsed) = inline {
                    self.absorb_results(job_id, None, parsed);
                }
                if downloads.is_empty() {
                    self.downloads_done(now_ms, job_id);
                } else {
                    for download in downloads {
                        self.send_call(now_ms, job_id, Call::Download(download));
                    }
                }
            }
            // A failed batch, but not one of `lines`'s: a refusal for the enqueued-token limit
            // goes back to admission to wait for headroom, and does not count as a line attempt.
            PollState::OverEnqueuedLimit {
                message,
                limit_tokens,
            } => {
                self.event(LifecycleEvent::BatchFinished {
                    job: job_id,
                    batch_id,
                    state: report.state_label,
                });
                self.refused(now_ms, job_id, message, limit_tokens);
            }
            PollState::Ended { kind, message } => {
                let response =
                    adapter(job.route.provider).ended_response(&batch_id, kind, &message);
                self.event(LifecycleEvent::BatchFinished {
                    job: job_id,
                    batch_id: batch_id.clone(),
                    state: report.state_label,
                });
                let job = self.jobs.remove(&job_id).expect("job exists");
                if report.completed == 0 {
                    // Nothing ran: the requests may go into a new batch.
                    let lines = job.fingerprints.into_iter().map(|fp| (fp, None)).collect();
                    let state = kind.as_str();
                    self.lines_not_run(now_ms, job_id, &batch_id, state, lines, response);
                } else {
                    self.persist_released(job.fingerprints.clone());
                    for fp in &job.fingerprints {
                        self.answer_entry(fp, response.clone(), false);
                    }
                }
                self.delete_provider_files(&job.route, &batch_id, &job.tag, job.provider_files);
            }
        }
    }

    /// Answer the callers of result lines (read by download `call`, or inline with the poll).
    /// A line for an unknown custom id, or a second line for one, is skipped with a warning; a
    /// line a retried download delivers again is skipped quietly. Lines for requests that did
    /// not run are held back to be resubmitted (see `lines`).
    fn absorb_results(
        &mut self,
        job_id: JobId,
        call: Option<CallId>,
        parsed: providers::ParsedResults,
    ) {
        let batch_id = self.jobs[&job_id]
            .batch_id()
            .unwrap_or_default()
            .to_string();
        for bad in &parsed.malformed {
            self.warn(format!(
                "batch {batch_id}: result line {} could not be read ({}); its request gets an error",
                bad.line_number, bad.reason
            ));
        }
        let job = &self.jobs[&job_id];
        let resumed = job.resumed;
        let fleet = job.fleet;
        let by_custom_id: HashMap<&str, &str> = job
            .custom_ids
            .iter()
            .map(String::as_str)
            .zip(job.fingerprints.iter().map(String::as_str))
            .collect();
        let items: Vec<(providers::ItemResult, Option<LineOf>)> = parsed
            .items
            .into_iter()
            .map(|item| {
                let known = by_custom_id.get(item.custom_id.as_str()).map(|fp| {
                    let entry = self.entries.get(*fp);
                    let for_jobs = entry.is_some_and(|e| {
                        !e.waiters.is_empty()
                            && e.waiters.iter().all(|r| self.job_specs.contains_key(r))
                    });
                    (fp.to_string(), entry.is_some(), for_jobs)
                });
                (item, known)
            })
            .collect();
        let resubmit = self.config.resubmit;
        // A line for a request this run has not asked about (yet) is kept with the job.
        let mut answers: Vec<(String, HttpResponse)> = Vec::new();
        let mut held: Vec<(String, Option<HttpResponse>)> = Vec::new();
        let mut early = Vec::new();
        let mut late = Vec::new();
        let mut skipped = Skipped::default();
        let job = self.jobs.get_mut(&job_id).expect("job exists");
        let JobState::Downloading {
            unclaimed, reading, ..
        } = &mut job.state
        else {
            return debug_assert!(false, "results outside Downloading");
        };
        reading.count(call, items.len());
        for (item, known) in items {
            if known.is_none() && !resumed {
                skipped.unknown.push(item.custom_id);
                continue;
            }
            if !reading.see(call, &item.custom_id) {
                skipped.duplicate.push(item.custom_id);
                continue;
            }
            // Read by an earlier attempt (a retried download, or a download made again): its
            // first line was used.
            if !reading.read.insert(item.custom_id.clone()) {
                continue;
            }
            match known {
                Some((fp, true, for_jobs)) => {
                    if resubmit && lines::not_run(&item.response) {
                        reading.held_state = Some(lines::not_run_state(&item.response));
                        held.push((fp, None));
                    } else if resubmit && for_jobs && lines::retryable(&item.response) {
                        held.push((fp, Some(item.response)));
                    } else {
                        answers.push((fp, item.response));
                    }
                }
                // Fleet mode: a line no caller here waits for still goes to the store.
                Some((fp, false, _)) if fleet => answers.push((fp, item.response)),
                // Answered already: a request a resumed job was asked about again, or one the
                // normal endpoint answered after its deadline (see `deadline`).
                Some((fp, false, _)) => late.push((fp, item.response.status)),
                None => early.push((item.custom_id, item.response)),
            }
        }
        reading.held.extend(held);
        // The first line for a custom id wins, as within one download.
        for (custom_id, response) in early {
            unclaimed.entry(custom_id).or_insert(response);
        }
        self.warn_skipped(&batch_id, skipped);
        for (fp, status) in late {
            self.line_after_fallback(&fp, &batch_id, status);
        }
        self.outputs.push(Output::Event {
            event: LifecycleEvent::ResultsReceived {
                job: job_id,
                batch_id,
                results: answers.len(),
            },
        });
        for (fp, response) in answers {
            if fleet {
                self.fleet_line(self.now_ms, fp, response);
            } else {
                self.answer_entry(&fp, response, true);
            }
        }
    }

    /// All results are in: requests without a line (or with a line held back) did not run.
    pub(super) fn finish_job(&mut self, now_ms: u64, job_id: JobId) {
        let Some(job) = self.jobs.remove(&job_id) else {
            return;
        };
        let JobState::Downloading {
            batch_id,
            end_kind,
            mut reading,
            ..
        } = job.state
        else {
            return debug_assert!(false, "finished outside Downloading");
        };
        let kind = end_kind.unwrap_or(EndKind::Failed);
        let message = match end_kind {
            Some(kind) => format!("the batch {kind} before this request ran"),
            None => "the batch completed without a result line for this request".to_string(),
        };
        let response = adapter(job.route.provider).ended_response(&batch_id, kind, &message);
        // Lines the provider counts as run that were not read even downloading again: which
        // requests they were is unknown, so none without a line is resubmitted.
        let unaccounted = reading.lines_ran.saturating_sub(reading.best_read);
        let mut not_run = Vec::new();
        let mut unsure = Vec::new();
        for fp in job.fingerprints {
            if !self.entries.contains_key(&fp) {
                continue;
            }
            match reading.held.remove(&fp) {
                Some(line) => not_run.push((fp, line)),
                None if unaccounted > 0 => unsure.push(fp),
                None => not_run.push((fp, None)),
            }
        }
        self.lines_unaccounted(&batch_id, unaccounted, unsure, response.clone());
        let state = end_kind
            .map(EndKind::as_str)
            .or(reading.held_state)
            .unwrap_or("completed");
        self.lines_not_run(now_ms, job_id, &batch_id, state, not_run, response);
        self.delete_provider_files(&job.route, &batch_id, &job.tag, job.provider_files);
    }

    /// The batch is over and every answer it holds is journalled (this step's records go out
    /// before its calls): delete its files at the provider, so they do not fill the user's
    /// storage quota. Not while the journal still points a request at the batch (a resumed
    /// batch with requests no caller asked for this run): a later run downloads them.
    fn delete_provider_files(
        &mut self,
        route: &Route,
        batch_id: &str,
        tag: &str,
        files: Vec<String>,
    ) {
        if !self.config.delete_provider_files
            || files.is_empty()
            || self.cache.has_pending_in(batch_id, tag)
        {
            return;
        }
        let adapter = adapter(route.provider);
        let ctx = providers::BatchContext { route, tag: "" };
        let requests: Vec<HttpRequest> = files
            .iter()
            .filter_map(|file| adapter.build_delete_file(&ctx, file))
            .collect();
        if requests.is_empty() {
            return;
        }
        let route = Arc::new(route.clone());
        for http in requests {
            let id = self.next_call;
            self.next_call += 1;
            self.file_deletes.insert(id, Arc::clone(&route));
            self.outputs.push(Output::Send {
                call: id,
                http: http.into(),
                stream: None,
            });
        }
    }

    /// A provider-file delete answered (`status`) or failed (`None`): counted in the report; a
    /// failure is a warning, never an error for callers. A file already gone (404) counts as
    /// deleted. `false` when `call` is no delete.
    fn file_deleted(&mut self, call: CallId, status: Option<u16>, reason: &str) -> bool {
        let Some(route) = self.file_deletes.remove(&call) else {
            return false;
        };
        let deleted = status.is_some_and(|s| (200..300).contains(&s) || s == 404);
        self.report.count_file_delete(&route, deleted);
        if !deleted {
            self.warn(format!(
                "could not delete a {} batch file at the provider ({reason}); it stays in your \
                 storage there until the provider expires it",
                route.provider
            ));
        }
        true
    }

    fn fail_job(&mut self, job_id: JobId, code: FailCode, message: String) {
        if let Some(job) = self.jobs.remove(&job_id) {
            // Fleet mode: a look-up of another process's intent fails the callers waiting here
            // on it (and the member lets their requests go).
            let fingerprints = match job.state {
                JobState::Finding {
                    origin: CreateOrigin::Fleet { own: false },
                    ..
                } => self.fleet_record(&job.tag),
                _ => job.fingerprints,
            };
            self.fail_entries(&fingerprints, code, &message);
        }
    }

    fn protocol_failure(&mut self, job_id: JobId, call: &Call, message: String) {
        let batch = self.jobs[&job_id]
            .batch_id()
            .map_or(String::new(), |id| format!(" (batch {id})"));
        self.fail_job(
            job_id,
            FailCode::Protocol,
            format!(
                "could not read the provider's {} answer{batch}: {message}",
                call.as_str()
            ),
        );
    }

    /// A non-2xx answer or no answer. 429, 5xx and transport errors are retried with backoff
    /// (honouring Retry-After); a lost create is looked for before anything is created again.
    pub(super) fn on_call_failure(
        &mut self,
        now_ms: u64,
        call: CallId,
        response: Option<HttpResponse>,
        reason: String,
    ) {
        if self.file_deleted(call, response.as_ref().map(|r| r.status), &reason) {
            return;
        }
        // A download cut off mid-stream is retried from the start: its lines count anew (the
        // callers its chunks answered stay answered; the retry's lines for them are skipped).
        self.streamed_lines.remove(&call);
        let call_id = call;
        let Some((job_id, call)) = self.calls.remove(&call) else {
            return;
        };
        if let Some(JobState::Downloading { reading, .. }) =
            self.jobs.get_mut(&job_id).map(|j| &mut j.state)
        {
            reading.call_failed(call_id);
        }
        if !self.jobs.contains_key(&job_id) {
            return;
        }
        let failed_step = call.as_str();
        let fleet = self.jobs[&job_id].fleet;
        if fleet && call == Call::Create && response.as_ref().is_none_or(|r| r.status >= 500) {
            // The create may have gone through: the member looks it up after the grace.
            return self.fleet_create_lost(now_ms, job_id);
        }
        if !fleet
            && call == Call::Create
            && response.as_ref().is_some_and(|r| r.status == 429)
            && self.create_refused_for_queue(job_id)
        {
            // The provider's queue is full while a batch of ours is in it: wait for one to end.
            return self.refused(now_ms, job_id, reason, None);
        }
        let job = self.jobs.get_mut(&job_id).expect("job exists");
        let retryable = response
            .as_ref()
            .is_none_or(|r| r.status == 429 || r.status == 408 || r.status >= 500);
        if !retryable {
            let response = response.expect("non-retryable failures have a response");
            let gone = matches!(call, Call::Poll | Call::Download(_))
                && matches!(response.status, 404 | 410);
            if let (true, Some(submitted_at)) = (gone, job.resumed_from) {
                return self.batch_gone(job_id, submitted_at, &reason);
            }
            // The provider refused the batch call itself (bad key, bad request): every caller gets
            // that answer, as the normal endpoint would have refused them.
            let job = self.jobs.remove(&job_id).expect("job exists");
            if call == Call::Poll {
                // The batch a journal points at is gone (deleted, another account): a re-run
                // must submit these requests again rather than poll it forever.
                self.persist_released(job.fingerprints.clone());
            }
            for fp in job.fingerprints {
                self.answer_entry(&fp, response.clone(), false);
            }
            return;
        }
        // A create that got no answer, or a server error, may have gone through: look for the
        // batch by its key before creating again. Where batches carry no tag (Anthropic), a
        // server error is taken at its word and only a lost answer is ambiguous.
        let may_exist = response.as_ref().is_none_or(|r| r.status >= 500);
        let findable = Self::find_request(job).is_some();
        let next_call = if call == Call::Create && may_exist && (findable || response.is_none()) {
            if let JobState::Creating { items, file } = &mut job.state {
                job.state = JobState::Finding {
                    items: std::mem::take(items),
                    file: file.take(),
                    origin: CreateOrigin::ThisRun,
                };
            }
            Call::Find
        } else {
            call
        };
        job.attempts += 1;
        if job.attempts >= self.config.call_attempts {
            let message = format!(
                "the provider's {} call failed {} times (last: {reason}); giving up",
                failed_step, job.attempts
            );
            return self.fail_job(job_id, FailCode::ProviderUnavailable, message);
        }
        let attempt = job.attempts;
        let retry_after_ms = response.as_ref().and_then(retry_after_ms);
        let backoff = self.backoff_ms(attempt);
        let delay_ms = retry_after_ms.map_or(backoff, |r| r.max(backoff / 2));
        let step = next_call.as_str();
        let max_attempts = self.config.call_attempts.saturating_sub(1);
        let job = self.jobs.get_mut(&job_id).expect("job exists");
        let host = url_host(&job.route.base_url).to_string();
        job.retries.push(Retry {
            at_ms: now_ms + delay_ms,
            call: next_call,
        });
        self.event(LifecycleEvent::Retry {
            job: job_id,
            step: step.into(),
            attempt,
            max_attempts,
            delay_ms,
            reason,
            host,
        });
    }

    /// A batch a previous run journalled is gone at the provider, or its results are: fail its
    /// callers with an error naming the batch and its age (no retry could bring it back), and
    /// release its requests so the next run submits them again.
    fn batch_gone(&mut self, job_id: JobId, submitted_at: Option<u64>, reason: &str) {
        let job = self.jobs.remove(&job_id).expect("job exists");
        let batch_id = job.batch_id().unwrap_or_default();
        let age = match (submitted_at, self.wall_ms()) {
            (Some(at), Some(now)) => {
                format!("submitted {} ago", describe_age(now.saturating_sub(at)))
            }
            _ => "submitted by an earlier run (its age was not recorded)".to_string(),
        };
        let message = format!(
            "the {} batch {batch_id} ({age}) or its results are no longer kept by the provider \
             ({reason}); providers keep batch results about 30 days. Its requests were released \
             from the cache journal: run again to submit them anew",
            job.route.provider
        );
        self.persist_released(job.fingerprints.clone());
        self.fail_entries(&job.fingerprints, FailCode::BatchGone, &message);
    }

    pub(super) fn backoff_ms(&mut self, attempt: u32) -> u64 {
        let (base_ms, max_ms) = (self.config.backoff_ms, self.config.max_backoff_ms);
        self.jitter.backoff_ms(attempt, base_ms, max_ms)
    }
}

/// An age in days (with one decimal below 10), hours or minutes.
fn describe_age(ms: u64) -> String {
    const HOUR_MS: u64 = 60 * 60 * 1000;
    let days = ms as f64 / crate::cache::AgeLimit::DAY_MS as f64;
    if days >= 10.0 {
        format!("{days:.0} days")
    } else if days >= 1.0 {
        format!("{days:.1} days")
    } else if ms >= HOUR_MS {
        format!("{} hours", ms / HOUR_MS)
    } else {
        format!("{} minutes", ms / 60_000)
    }
}

/// Time left for a batch at the rate its requests finished between `origin` and `now` (each a
/// time and a count of finished requests); `None` before any progress was seen. The rate is
/// this run's observation: a batch resumed half done counts from where this run found it.
pub(crate) fn eta_ms(origin: (u64, u64), now: (u64, u64), total: u64) -> Option<u64> {
    let (t0, done0) = origin;
    let (t1, done1) = now;
    if done1 >= total && total > 0 {
        return Some(0);
    }
    if done1 <= done0 || t1 <= t0 {
        return None;
    }
    let remaining = total.saturating_sub(done1) as u128;
    let per = (t1 - t0) as u128;
    let eta = remaining * per / (done1 - done0) as u128;
    Some(eta.min(u64::MAX as u128) as u64)
}

/// `api.openai.com` of `https://api.openai.com/v1`.
pub(super) fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    &rest[..end]
}

/// A result line's request, if the job has it: (fingerprint, still open, answered as a job).
type LineOf = (String, bool, bool);

/// `Retry-After` in seconds (the form the providers send), as milliseconds.
pub(super) fn retry_after_ms(response: &HttpResponse) -> Option<u64> {
    let value = response.header("retry-after")?.trim();
    let seconds: f64 = value.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| (seconds * 1000.0).round() as u64)
}

#[cfg(test)]
mod eta_tests {
    use super::{eta_ms, url_host};

    #[test]
    fn eta_is_the_remaining_requests_at_the_observed_rate() {
        // 40 of 100 done in 60 s since submission: 60 left at 1.5 s each.
        assert_eq!(eta_ms((1_000, 0), (61_000, 40), 100), Some(90_000));
        // Counted from where this run first saw a resumed batch.
        assert_eq!(eta_ms((0, 50), (10_000, 60), 100), Some(40_000));
        assert_eq!(eta_ms((0, 0), (10_000, 0), 100), None, "no progress yet");
        assert_eq!(eta_ms((0, 0), (0, 0), 0), None);
        assert_eq!(eta_ms((0, 0), (5_000, 100), 100), Some(0), "all done");
    }

    #[test]
    fn the_host_of_a_base_url() {
        assert_eq!(url_host("https://api.openai.com/v1"), "api.openai.com");
        assert_eq!(url_host("http://127.0.0.1:9/x?y"), "127.0.0.1:9");
    }
}
