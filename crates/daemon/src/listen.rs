//! The daemon's listeners — the control socket and the metrics endpoint —
//! serve many clients at once, so that no client, idle, slow or hostile,
//! delays another one (a pod's creation waiting on the control socket, a
//! scrape) or touches forwarding (the listeners have threads of their own).
//!
//! One thread per listener runs a mio loop over the listening socket and
//! every connection: it reads each request as it arrives, hands a complete
//! one to a small pool of answering threads (an answer may take a while:
//! large tables, or creating a device), and writes the answer as the
//! client takes it. Bounds:
//!
//! - at most `max_clients` connections at once; one more closes the
//!   longest-waiting connection that has not sent its request yet, or, when
//!   every one is being answered, is told `busy` (best effort, without
//!   waiting) and closed;
//! - a request is at most `max_request` bytes; what is read by then is the
//!   request;
//! - a connection that has not sent a whole request within `deadline` of
//!   being accepted, or has not taken its whole answer within `deadline` of
//!   it being ready, is closed.
//!
//! Counters of what was refused or timed out are logged at debug level
//! (they are the clients' problem, not the dataplane's).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::event::Source;
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};

/// What a listener serves: when a request is whole, and its answer.
pub trait Service: Send + Sync + 'static {
    /// Whether `buf` (what the client sent so far) is a whole request.
    fn complete(&self, buf: &[u8]) -> bool;
    /// The answer to `request` (whole, cut at the bound, or what the
    /// client sent before it closed its side).
    fn answer(&self, request: &[u8]) -> Vec<u8>;
    /// What a client over the bound is told before it is closed.
    fn busy(&self) -> Vec<u8>;
}

/// The bounds of a listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_clients: usize,
    pub max_request: usize,
    pub deadline: Duration,
    /// Threads that compute answers.
    pub answerers: usize,
}

/// A listening socket.
pub enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Listener {
    fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
            Listener::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
        }
    }

    fn source(&mut self) -> &mut dyn Source {
        match self {
            Listener::Unix(l) => l,
            Listener::Tcp(l) => l,
        }
    }
}

impl Stream {
    fn source(&mut self) -> &mut dyn Source {
        match self {
            Stream::Unix(s) => s,
            Stream::Tcp(s) => s,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum State {
    /// Reading the request.
    Reading,
    /// An answering thread has it.
    Answering,
    /// Writing the answer, from `at`.
    Writing { answer: Vec<u8>, at: usize },
}

struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    state: State,
    deadline: Instant,
}

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);

/// A running listener.
pub struct Running {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// Stops the loop (connections in flight are closed) and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves `service` on `listener` on a thread called `name`.
pub fn start(
    name: &str,
    mut listener: Listener,
    service: Arc<dyn Service>,
    limits: Limits,
) -> io::Result<Running> {
    let poll = Poll::new()?;
    poll.registry()
        .register(listener.source(), LISTENER, Interest::READABLE)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let stop = Arc::new(AtomicBool::new(false));
    // The answering threads: jobs in, answers out (then a wake-up).
    let (job_tx, job_rx) = mpsc::channel::<(usize, Vec<u8>)>();
    let (done_tx, done_rx) = mpsc::channel::<(usize, Vec<u8>)>();
    let job_rx = Arc::new(Mutex::new(job_rx));
    for i in 0..limits.answerers.max(1) {
        let (rx, tx, svc, w) = (
            Arc::clone(&job_rx),
            done_tx.clone(),
            Arc::clone(&service),
            Arc::clone(&waker),
        );
        std::thread::Builder::new()
            .name(format!("{name}-a{i}"))
            .spawn(move || {
                loop {
                    let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok((token, request)) = job else { break };
                    let answer = svc.answer(&request);
                    if tx.send((token, answer)).is_err() {
                        break;
                    }
                    let _ = w.wake();
                }
            })?;
    }
    let stop2 = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let mut l = Loop {
                poll,
                listener,
                service,
                limits,
                conns: HashMap::new(),
                next: 2,
                jobs: job_tx,
            };
            l.run(&stop2, &done_rx);
        })?;
    Ok(Running {
        stop,
        waker,
        thread: Some(thread),
    })
}

struct Loop {
    poll: Poll,
    listener: Listener,
    service: Arc<dyn Service>,
    limits: Limits,
    conns: HashMap<usize, Conn>,
    /// The next connection's token (never reused while the loop runs).
    next: usize,
    jobs: mpsc::Sender<(usize, Vec<u8>)>,
}

impl Loop {
    fn run(&mut self, stop: &AtomicBool, done: &mpsc::Receiver<(usize, Vec<u8>)>) {
        let mut events = Events::with_capacity(256);
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let timeout = self
                .conns
                .values()
                .filter(|c| !matches!(c.state, State::Answering))
                .map(|c| c.deadline.saturating_duration_since(now))
                .min()
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1));
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::warn!("listener poll: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
                continue;
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(t) => {
                        if ev.is_readable() || ev.is_read_closed() {
                            self.read(t);
                        }
                        if ev.is_writable() {
                            self.write(t);
                        }
                    }
                }
            }
            while let Ok((t, answer)) = done.try_recv() {
                if let Some(c) = self.conns.get_mut(&t) {
                    c.state = State::Writing { answer, at: 0 };
                    c.deadline = Instant::now() + self.limits.deadline;
                    self.write(t);
                }
            }
            let now = Instant::now();
            let expired: Vec<usize> = self
                .conns
                .iter()
                .filter(|(_, c)| !matches!(c.state, State::Answering) && c.deadline <= now)
                .map(|(t, _)| *t)
                .collect();
            for t in expired {
                tracing::debug!("listener: a client ran past its deadline; closed");
                self.close(t);
            }
        }
    }

    fn accept(&mut self) {
        loop {
            let mut stream = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!("listener accept: {e}");
                    return;
                }
            };
            if self.conns.len() >= self.limits.max_clients {
                // The longest-waiting client that has not sent its request
                // makes room: a flood of idle connections cannot lock out
                // a client that asks at once.
                let oldest = self
                    .conns
                    .iter()
                    .filter(|(_, c)| matches!(c.state, State::Reading))
                    .min_by_key(|(_, c)| c.deadline)
                    .map(|(t, _)| *t);
                match oldest {
                    Some(t) => {
                        tracing::debug!("listener: at the bound, the oldest idle client closed");
                        self.close(t);
                    }
                    None => {
                        // Every one is being answered. Best effort: a
                        // socket just accepted takes this much.
                        let _ = stream.write(&self.service.busy());
                        tracing::debug!(
                            clients = self.conns.len(),
                            "listener: a client over the bound refused"
                        );
                        continue;
                    }
                }
            }
            let t = self.next;
            self.next += 1;
            if self
                .poll
                .registry()
                .register(stream.source(), Token(t), Interest::READABLE)
                .is_err()
            {
                continue;
            }
            self.conns.insert(
                t,
                Conn {
                    stream,
                    buf: Vec::new(),
                    state: State::Reading,
                    deadline: Instant::now() + self.limits.deadline,
                },
            );
        }
    }

    fn read(&mut self, t: usize) {
        let max = self.limits.max_request;
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        if !matches!(c.state, State::Reading) {
            return;
        }
        let mut chunk = [0u8; 512];
        let whole = loop {
            let room = max.saturating_sub(c.buf.len()).min(chunk.len());
            if room == 0 {
                break true;
            }
            match c.stream.read(&mut chunk[..room]) {
                Ok(0) => break true,
                Ok(n) => {
                    c.buf.extend_from_slice(&chunk[..n]);
                    if self.service.complete(&c.buf) {
                        break true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.close(t);
                    return;
                }
            }
        };
        if whole {
            c.state = State::Answering;
            let request = std::mem::take(&mut c.buf);
            let _ = self.poll.registry().deregister(c.stream.source());
            if self.jobs.send((t, request)).is_err() {
                self.close(t);
            }
        }
    }

    fn write(&mut self, t: usize) {
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        let State::Writing { answer, at } = &mut c.state else {
            return;
        };
        while *at < answer.len() {
            match c.stream.write(&answer[*at..]) {
                Ok(0) => break,
                Ok(n) => *at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let registry: &Registry = self.poll.registry();
                    let source = c.stream.source();
                    if registry
                        .reregister(source, Token(t), Interest::WRITABLE)
                        .is_err()
                    {
                        let _ = registry.register(source, Token(t), Interest::WRITABLE);
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.close(t);
    }

    fn close(&mut self, t: usize) {
        if let Some(mut c) = self.conns.remove(&t) {
            let _ = self.poll.registry().deregister(c.stream.source());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers `echo <request>`; requests end at a newline.
    struct Echo;

    impl Service for Echo {
        fn complete(&self, buf: &[u8]) -> bool {
            buf.contains(&b'\n')
        }
        fn answer(&self, request: &[u8]) -> Vec<u8> {
            if request.starts_with(b"big") {
                return vec![b'x'; 8 << 20];
            }
            let mut a = b"echo ".to_vec();
            a.extend_from_slice(request);
            a
        }
        fn busy(&self) -> Vec<u8> {
            b"busy\n".to_vec()
        }
    }

    fn socket(tag: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("podwire-listen-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    fn serve(path: &std::path::Path, limits: Limits) -> Running {
        let l = UnixListener::bind(path).unwrap();
        start("test-listen", Listener::Unix(l), Arc::new(Echo), limits).unwrap()
    }

    fn ask(path: &std::path::Path, request: &[u8]) -> String {
        let mut s = std::os::unix::net::UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        // A refused client may find the socket closed already.
        let _ = s.write_all(request);
        // A request without a newline ends with the client's side.
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    #[test]
    fn idle_and_stuck_clients_do_not_delay_others() {
        let path = socket("idle");
        // A deadline far longer than the test: had the idle clients been
        // served one after another, the request below would wait for 100
        // deadlines.
        let limits = Limits {
            max_clients: 256,
            max_request: 256,
            deadline: Duration::from_secs(60),
            answerers: 2,
        };
        let running = serve(&path, limits);
        let idle: Vec<_> = (0..100)
            .map(|_| std::os::unix::net::UnixStream::connect(&path).unwrap())
            .collect();
        // One that sends half a request and stops, and one that asks for
        // a large answer and never reads it.
        let mut half = std::os::unix::net::UnixStream::connect(&path).unwrap();
        half.write_all(b"show ro").unwrap();
        let mut stuck = std::os::unix::net::UnixStream::connect(&path).unwrap();
        stuck.write_all(b"big\n").unwrap();
        let started = Instant::now();
        assert_eq!(ask(&path, b"show stats\n"), "echo show stats\n");
        assert_eq!(ask(&path, b"no newline"), "echo no newline");
        assert!(
            started.elapsed() < limits.deadline,
            "answered only after an idle client's deadline"
        );
        drop((idle, half, stuck));
        running.stop();
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn over_the_bound_the_oldest_idle_client_makes_room_and_a_deadline_closes_idle_ones() {
        let path = socket("bound");
        let limits = Limits {
            max_clients: 8,
            max_request: 16,
            deadline: Duration::from_millis(500),
            answerers: 1,
        };
        let running = serve(&path, limits);
        let connect = || {
            let s = std::os::unix::net::UnixStream::connect(&path).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        };
        let eof = |s: &mut std::os::unix::net::UnixStream| {
            let mut b = [0u8; 8];
            s.read(&mut b).unwrap() == 0
        };
        let mut idle: Vec<_> = (0..8).map(|_| connect()).collect();
        // A ninth client is served at once: the first idle one is closed.
        assert_eq!(ask(&path, b"x\n"), "echo x\n");
        assert!(eof(&mut idle[0]), "the oldest idle client closed");
        // Past the deadline the others are closed too (EOF, no answer).
        for s in &mut idle[1..] {
            assert!(eof(s), "closed without an answer");
        }
        // A request is cut at max_request bytes.
        assert_eq!(
            ask(&path, b"0123456789abcdefghij\n"),
            "echo 0123456789abcdef"
        );
        // Eight clients that are being answered (large answers they never
        // read) fill the bound: the next is told busy.
        let stuck: Vec<_> = (0..8)
            .map(|_| {
                let mut s = connect();
                s.write_all(b"big\n").unwrap();
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(ask(&path, b"x\n"), "busy\n");
        drop(stuck);
        running.stop();
        let _ = std::fs::remove_file(&path);
    }
}
