//! An HTTP receiver for the sensor's `api` output (NDJSON batches), on a fixed loopback port,
//! that can be stopped (the port then refuses connections and open ones are cut: an outage)
//! and started again. It answers 200 to every request and counts the events per id, and the
//! user names of `ftp.login` events.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, PoisonError},
};

use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{TcpListener, TcpStream},
    task::{JoinHandle, JoinSet},
};

/// Largest request body read (the sensor's batches are far smaller).
const MAX_BODY: usize = 64 << 20;

/// What the receiver got.
#[derive(Debug, Default)]
pub struct Tally {
    /// Requests answered.
    pub requests: u64,
    /// Events received (lines of the bodies), duplicates included.
    pub lines: u64,
    /// Times each event id was received (kept only when ids are tracked).
    pub ids: HashMap<String, u32>,
    /// User names of the `ftp.login` events.
    pub logins: HashSet<String>,
}

/// The receiver.
pub struct Receiver {
    port: u16,
    track: bool,
    tally: Arc<Mutex<Tally>>,
    task: Option<JoinHandle<()>>,
}

impl Receiver {
    /// A receiver for `port`, not started; `track` keeps every event id (and login).
    #[must_use]
    pub fn new(port: u16, track: bool) -> Self {
        Self {
            port,
            track,
            tally: Arc::default(),
            task: None,
        }
    }

    /// Listens (again).
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn start(&mut self) -> std::io::Result<()> {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await?;
        let (tally, track) = (Arc::clone(&self.tally), self.track);
        self.task = Some(tokio::spawn(async move {
            // Dropped with this task when the receiver stops: every connection is cut.
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                connections.spawn(serve(stream, Arc::clone(&tally), track));
                while connections.try_join_next().is_some() {}
            }
        }));
        Ok(())
    }

    /// Stops listening and cuts the open connections.
    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Runs `f` on the tally.
    pub fn with<T>(&self, f: impl FnOnce(&Tally) -> T) -> T {
        f(&self.tally.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Answers the requests of one connection until it closes.
async fn serve(stream: TcpStream, tally: Arc<Mutex<Tally>>, track: bool) {
    let mut stream = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        // The request line and the headers, up to the blank line.
        let mut first = true;
        loop {
            line.clear();
            match stream.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let l = line.trim_end();
            if l.is_empty() && !first {
                break;
            }
            first = false;
            if let Some((k, v)) = l.split_once(':')
                && k.trim().eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        if length > MAX_BODY {
            return;
        }
        let mut body = vec![0u8; length];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        count(&body, &tally, track);
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        if stream.get_mut().write_all(answer).await.is_err() {
            return;
        }
    }
}

fn count(body: &[u8], tally: &Mutex<Tally>, track: bool) {
    let mut t = tally.lock().unwrap_or_else(PoisonError::into_inner);
    t.requests += 1;
    for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        t.lines += 1;
        if !track {
            continue;
        }
        let Ok(event) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        if let Some(id) = event["id"].as_str() {
            *t.ids.entry(id.to_owned()).or_default() += 1;
        }
        if event["logtype"] == "ftp.login"
            && let Some(user) = event["extra"]["username"].as_str()
        {
            t.logins.insert(user.to_owned());
        }
    }
}
