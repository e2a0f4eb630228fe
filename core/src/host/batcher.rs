//! The generic batcher as the bindings drive it: every call takes the host's time and leaves
//! its outcome (layout: [`super::wire`]) for [`BatcherHost::deliver`], which hands it to the
//! host's scratch buffer or keeps it for [`BatcherHost::take_overflow`] when it does not fit.

use crate::batcher::{AddError, BatchId, Batcher, Event, HostBatcherOptions, ItemId, Status};

use super::wire::{self, HostIds};
use super::{ms, HostArgError};

pub struct BatcherHost {
    inner: Batcher,
    adds: Vec<Result<ItemId, AddError>>,
    out: Vec<f64>,
    overflow: Option<Vec<f64>>,
    host_ids: Option<HostIds>,
}

impl BatcherHost {
    /// `host_item_ids`: outcomes name items by the host's own ids (`add_with_ids`), in the
    /// [`HostIds`] layout.
    pub fn new(
        options: HostBatcherOptions,
        host_item_ids: bool,
    ) -> Result<Self, crate::options::OptionError> {
        let inner = Batcher::new(options.into_config()?)?;
        Ok(BatcherHost {
            inner,
            adds: Vec::new(),
            out: Vec::new(),
            overflow: None,
            host_ids: host_item_ids.then(HostIds::default),
        })
    }

    /// Hand the last outcome to the host: `write` gets it when it fits `capacity` (the scratch
    /// buffer's length), else it is kept for [`Self::take_overflow`]. Returns its length.
    pub fn deliver(&mut self, capacity: usize, write: impl FnOnce(&[f64])) -> u32 {
        let len = self.out.len();
        if len <= capacity {
            write(&self.out);
        } else {
            self.overflow = Some(std::mem::take(&mut self.out));
        }
        len as u32
    }

    /// The last outcome, when it did not fit the scratch buffer.
    pub fn take_overflow(&mut self) -> Vec<f64> {
        self.overflow.take().unwrap_or_default()
    }

    fn encode(&mut self) {
        match &mut self.host_ids {
            Some(ids) => ids.encode(&mut self.inner, &self.adds, &mut self.out),
            None => wire::encode(&mut self.inner, &self.adds, &mut self.out),
        }
        self.adds.clear();
        if self.inner.is_closed() && self.inner.live_items() == 0 {
            self.adds.shrink_to_fit(); // drained for good: nothing more is added
        }
    }

    fn event(&mut self, now_ms: f64, event: Event<'_>) {
        self.inner.handle(ms(now_ms), event);
        self.encode();
    }

    /// Add one item per entry of `groups` (interned group keys). `more_follow`: more adds of
    /// this instant come in the next call, so due windows wait for it.
    pub fn add(&mut self, now_ms: f64, groups: &[u32], more_follow: bool) {
        self.inner
            .add_many(ms(now_ms), groups, more_follow, &mut self.adds);
        self.encode();
    }

    /// `add` for the host-id layout: the adds get the host ids `first_id`, `first_id + 1`, …
    pub fn add_with_ids(&mut self, now_ms: f64, groups: &[u32], first_id: f64, more_follow: bool) {
        self.inner
            .add_many(ms(now_ms), groups, more_follow, &mut self.adds);
        if let Some(ids) = &mut self.host_ids {
            ids.record(&self.adds, first_id);
        }
        self.encode();
    }

    pub fn tick(&mut self, now_ms: f64) {
        self.event(now_ms, Event::Tick);
    }

    /// Handlers returned (those of one turn together): `batches[i]` failed on its own at the
    /// next `failed_counts[i]` positions of `failed` (see [`wire::completions`]). One call and
    /// one outcome for all of them.
    pub fn completed_many(
        &mut self,
        now_ms: f64,
        batches: &[f64],
        failed_counts: &[u32],
        failed: &[u32],
    ) -> Result<(), HostArgError> {
        let completions =
            wire::completions(batches, failed_counts, failed).map_err(HostArgError)?;
        let host_ids = self.host_ids.as_mut();
        wire::complete_many(
            &mut self.inner,
            host_ids,
            ms(now_ms),
            completions,
            &mut self.out,
        );
        Ok(())
    }

    pub fn failed(&mut self, now_ms: f64, batch: f64, retryable: bool) {
        let batch = BatchId(batch as u64);
        self.event(now_ms, Event::BatchFailed { batch, retryable });
    }

    pub fn cancel(&mut self, now_ms: f64, item: f64) {
        let item = ItemId(item as u64);
        self.event(now_ms, Event::Cancel { item });
    }

    pub fn flush(&mut self, now_ms: f64) {
        self.event(now_ms, Event::Flush);
    }

    pub fn close(&mut self, now_ms: f64, abort: bool) {
        self.event(now_ms, Event::Close { abort });
    }

    pub fn status(&self) -> Status {
        self.inner.status()
    }
}
