//! The plain-text log line, written for a server that logs every response: the same text as
//! tracing-subscriber's default format without colours, made with a fraction of its work.
//!
//! Why: with the access log on (the default) the line was 17% of a request's instructions
//! (callgrind, BENCHMARKS.md). The default formatter wraps every part in a colour style, even
//! an empty one, and writes the timestamp field by field through `core::fmt`. [`Line`] writes
//! the same parts directly and keeps the timestamp's date and time to the second per thread,
//! so a line within the same second only writes its microseconds. Fields are formatted by the
//! subscriber's own field formatter, as before, so span and event fields read the same.
//!
//! A terminal keeps the coloured default; this format is for logs that go to a file or a
//! collector.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// `2026-12-03T18:30:00.123456Z  INFO request{trace_id=... method=GET}: target: fields`.
pub struct Line;

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write_timestamp(&mut writer, SystemTime::now())?;
        let meta = event.metadata();
        // Right-aligned in five, as the default format does.
        writer.write_str(match *meta.level() {
            tracing::Level::ERROR => " ERROR ",
            tracing::Level::WARN => "  WARN ",
            tracing::Level::INFO => "  INFO ",
            tracing::Level::DEBUG => " DEBUG ",
            tracing::Level::TRACE => " TRACE ",
        })?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                writer.write_str(span.metadata().name())?;
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    writer.write_char('{')?;
                    writer.write_str(fields)?;
                    writer.write_char('}')?;
                }
                writer.write_char(':')?;
            }
            writer.write_char(' ')?;
        }
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        ctx.format_fields(writer.by_ref(), event)?;
        writer.write_char('\n')
    }
}

thread_local! {
    /// The last second this thread wrote, and its text up to the seconds (`...T18:30:00`).
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// `at` in RFC 3339, UTC, to the microsecond: `2026-12-03T18:30:00.123456Z`.
fn write_timestamp(writer: &mut impl fmt::Write, at: SystemTime) -> fmt::Result {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs();
    SECOND.with_borrow_mut(|(second, text)| {
        if *second != seconds {
            *second = seconds;
            text.clear();
            let whole = UNIX_EPOCH + std::time::Duration::from_secs(seconds);
            // `2026-12-03T18:30:00Z`, without its `Z`.
            write!(text, "{}", humantime::format_rfc3339_seconds(whole))?;
            text.pop();
        }
        writer.write_str(text)
    })?;
    let micros = since.subsec_micros();
    let mut digits = [b'0'; 6];
    let mut rest = micros;
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    writer.write_char('.')?;
    writer.write_str(std::str::from_utf8(&digits).expect("ASCII digits"))?;
    writer.write_char('Z')
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps_are_rfc_3339_to_the_microsecond_within_and_across_seconds() {
        let at = |micros: u64| UNIX_EPOCH + Duration::from_micros(micros);
        let text = |time| {
            let mut out = String::new();
            write_timestamp(&mut out, time).unwrap();
            out
        };
        assert_eq!(
            text(at(1_764_786_600_000_042)),
            "2025-12-03T18:30:00.000042Z"
        );
        assert_eq!(
            text(at(1_764_786_600_999_999)),
            "2025-12-03T18:30:00.999999Z"
        );
        assert_eq!(
            text(at(1_764_786_601_000_000)),
            "2025-12-03T18:30:01.000000Z"
        );
        assert_eq!(text(at(0)), "1970-01-01T00:00:00.000000Z");
    }

    /// The lines of a subscriber that writes with [`Line`] into a buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What the default format writes without colours, apart from the timestamp.
    #[test]
    fn a_line_reads_as_the_default_format_does() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .event_format(Line)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", trace_id = "abc", method = %"GET");
            span.in_scope(|| tracing::info!(status = 200u16, version = ?"HTTP/1.1", "response"));
            tracing::warn!(target: "polyport::x", "no span");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let (stamp, rest) = lines[0].split_at(27);
        assert!(
            stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
            "{stamp}"
        );
        assert_eq!(
            rest,
            "  INFO request{trace_id=\"abc\" method=GET}: polyport::logline::tests: response \
             status=200 version=\"HTTP/1.1\""
        );
        assert_eq!(&lines[1][27..], "  WARN polyport::x: no span");
    }
}
