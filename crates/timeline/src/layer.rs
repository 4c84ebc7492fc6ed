//! The `tracing_subscriber` layer: spans become `B`/`E` pairs on the thread's track, events
//! become instants (`i`), or complete events (`X`) when they carry `dur_us`; anything carrying
//! `coro` (or inside a span that does) goes on that coroutine's own track.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::json::{self, Fields};
use crate::sink;

/// Coroutine tracks get thread ids from here up (Linux thread ids stay below 2^22).
pub const CORO_TRACK_BASE: u32 = 0x4000_0000;

/// The track of coroutine `id`.
pub fn coro_track(id: u64) -> u32 {
    CORO_TRACK_BASE + (id % u64::from(CORO_TRACK_BASE)) as u32
}

/// What the layer keeps with each span.
struct SpanData {
    args: Vec<u8>,
    coro: Option<u64>,
}

/// Writes every span and event of the subscriber it is part of into this process's part of
/// the trace (see the crate's docs). [`to_file`](crate::to_file) installs it; a program with a
/// subscriber of its own adds it with `.with(timeline::Layer::new())`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Layer {
    _private: (),
}

impl Layer {
    /// The layer. It records only while a trace is open in this process
    /// ([`to_file`](crate::to_file), or [`from_env`](crate::from_env) found `MULTITASK_TRACE`).
    pub fn new() -> Layer {
        Layer { _private: () }
    }
}

/// Writes the track's name the first time coroutine `id` is seen.
fn name_coro(out: &mut Vec<u8>, pid: u32, id: u64, name: Option<&str>) {
    if sink::first_sight_of_coro(id) {
        let name = match name {
            Some(name) => format!("coroutine {id} {name}"),
            None => format!("coroutine {id}"),
        };
        json::metadata(out, "thread_name", pid, coro_track(id), &name);
    }
}

impl<S> tracing_subscriber::Layer<S> for Layer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !sink::on() {
            return;
        }
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let Some(span) = ctx.span(id) else {
            return;
        };
        // A span inside a coroutine's run stays on that coroutine's track.
        let coro = fields.coro.or_else(|| {
            span.parent()
                .and_then(|p| p.extensions().get::<SpanData>().and_then(|d| d.coro))
        });
        if coro.is_some() {
            ANY_CORO_SPAN.store(true, Ordering::Relaxed);
        }
        if let Some(c) = fields.coro.filter(|_| !fields.coro_name.is_empty()) {
            let now = sink::now_ns();
            sink::record(now, |out, pid, _| {
                name_coro(out, pid, c, Some(&fields.coro_name));
            });
        }
        span.extensions_mut().insert(SpanData {
            args: fields.args,
            coro,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut ext = span.extensions_mut();
        if let Some(data) = ext.get_mut::<SpanData>() {
            let mut fields = Fields {
                args: std::mem::take(&mut data.args),
                ..Fields::default()
            };
            values.record(&mut fields);
            data.args = fields.args;
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if !sink::on() {
            return;
        }
        let Some(span) = ctx.span(id) else {
            return;
        };
        let ext = span.extensions();
        let Some(data) = ext.get::<SpanData>() else {
            return;
        };
        let meta = span.metadata();
        let now = sink::now_ns();
        sink::record(now, |out, pid, tid| {
            let tid = match data.coro {
                Some(c) => {
                    name_coro(out, pid, c, None);
                    coro_track(c)
                }
                None => tid,
            };
            json::named(
                out,
                "B",
                meta.name(),
                meta.target(),
                now,
                None,
                pid,
                tid,
                &data.args,
            );
        });
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        if !sink::on() {
            return;
        }
        let Some(span) = ctx.span(id) else {
            return;
        };
        let ext = span.extensions();
        let Some(data) = ext.get::<SpanData>() else {
            return;
        };
        let now = sink::now_ns();
        sink::record(now, |out, pid, tid| {
            let tid = data.coro.map_or(tid, coro_track);
            json::end(out, now, pid, tid);
        });
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if !sink::on() {
            return;
        }
        // One `Fields` per thread, reused: an event allocates nothing once warm.
        let _ = SCRATCH.try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut fields) => {
                fields.clear();
                write_event(event, &ctx, &mut fields);
            }
            Err(_) => write_event(event, &ctx, &mut Fields::default()),
        });
    }
}

thread_local! {
    static SCRATCH: RefCell<Fields> = RefCell::new(Fields::default());
}

/// Whether any span of this process is on a coroutine's track: only then does an event look
/// up its span to find its track.
static ANY_CORO_SPAN: AtomicBool = AtomicBool::new(false);

fn write_event<S>(event: &Event<'_>, ctx: &Context<'_, S>, fields: &mut Fields)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    event.record(fields);
    let coro = fields.coro.or_else(|| {
        if !ANY_CORO_SPAN.load(Ordering::Relaxed) {
            return None;
        }
        ctx.event_span(event)
            .and_then(|s| s.extensions().get::<SpanData>().and_then(|d| d.coro))
    });
    let meta = event.metadata();
    let now = sink::now_ns();
    sink::record(now, |out, pid, tid| {
        let tid = match coro {
            Some(c) => {
                let name = (!fields.coro_name.is_empty()).then_some(fields.coro_name.as_str());
                name_coro(out, pid, c, name);
                coro_track(c)
            }
            None => tid,
        };
        let name = if fields.message.is_empty() {
            meta.name()
        } else {
            fields.message.as_str()
        };
        match fields.dur_us {
            Some(us) if us >= 0.0 => {
                let dur = (us * 1000.0) as u64;
                let start = now.saturating_sub(dur);
                json::named(
                    out,
                    "X",
                    name,
                    meta.target(),
                    start,
                    Some(dur),
                    pid,
                    tid,
                    &fields.args,
                );
            }
            _ => json::named(
                out,
                "i",
                name,
                meta.target(),
                now,
                None,
                pid,
                tid,
                &fields.args,
            ),
        }
    });
}
