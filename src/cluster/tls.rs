//! TLS 1.3 for the cluster link (rustls with the ring provider), the join
//! token, and [`Link`]: framed messages over a TLS connection driven on the
//! executor (`smol::Async<TcpStream>`, rustls fed with `read_tls` /
//! `write_tls`), so a hundred boards cost a hundred sockets, not threads.
//!
//! Trust: the cluster CA (`pki`). The server shows a certificate for the
//! fixed name [`SERVER_NAME`] signed by it, with the CA in the chain; the
//! agent accepts it only if that CA's sha256 is the one in its token, before
//! it sends anything. Agents then authenticate with a per-node client
//! certificate signed by the same CA (see `join`).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use smol::Async;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use super::protocol::{self, Message};
use crate::runtime::frame::FrameError;

/// The name in the cluster link's serving certificate. Trust comes from the
/// CA pinned by the token, not from addresses, so one name serves every way
/// a board may reach the server.
pub const SERVER_NAME: &str = "bramble-cluster";

#[derive(Debug)]
pub enum TlsError {
    /// A token that is not `K10<64 hex>::<secret>`.
    Token(String),
    Pem(String),
    Config(rustls::Error),
    Verifier(String),
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::Token(why) => write!(
                f,
                "bad join token ({why}); copy it whole from `bramble token` on the server: K10<CA hash>::<secret>"
            ),
            TlsError::Pem(why) => write!(f, "reading a certificate or key: {why}"),
            TlsError::Config(e) => write!(f, "TLS configuration: {e}"),
            TlsError::Verifier(e) => write!(f, "TLS certificate verifier: {e}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// What `bramble token` prints: `K10<sha256 hex of the CA certificate (DER)>::<secret>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub ca_hash: String,
    pub secret: String,
}

impl Token {
    pub fn new(ca_der: &[u8], secret: &str) -> Token {
        Token {
            ca_hash: sha256_hex(ca_der),
            secret: secret.to_string(),
        }
    }
}

impl std::str::FromStr for Token {
    type Err = TlsError;

    fn from_str(s: &str) -> Result<Token, TlsError> {
        let rest = s
            .trim()
            .strip_prefix("K10")
            .ok_or_else(|| TlsError::Token("it does not start with K10".into()))?;
        let (hash, secret) = rest
            .split_once("::")
            .ok_or_else(|| TlsError::Token("no :: between the CA hash and the secret".into()))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TlsError::Token("the CA hash is not 64 hex digits".into()));
        }
        if secret.is_empty() {
            return Err(TlsError::Token("the secret is empty".into()));
        }
        Ok(Token {
            ca_hash: hash.to_ascii_lowercase(),
            secret: secret.to_string(),
        })
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "K10{}::{}", self.ca_hash, self.secret)
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    crate::image::Digest::of(bytes).hex().to_string()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(e.to_string()))
}

pub fn key_from_pem(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::Pem(e.to_string()))
}

/// The server side: TLS 1.3 only; a client certificate is verified against
/// the CA when one is shown, and is optional so that a board can join.
pub fn server_config(
    ca_pem: &str,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    for ca in certs_from_pem(ca_pem)? {
        roots.add(ca).map_err(TlsError::Config)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Config)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(TlsError::Config)?;
    Ok(Arc::new(cfg))
}

/// The agent side: the server must show a chain ending in the CA whose hash
/// is in the token; `identity` is the node's client certificate and key.
pub fn client_config(
    ca_hash: &str,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Config)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCa {
            hash: ca_hash.to_string(),
            provider,
        }));
    let cfg = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(TlsError::Config)?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

pub fn server_name() -> ServerName<'static> {
    ServerName::try_from(SERVER_NAME).expect("a valid DNS name")
}

/// Accepts a server whose chain carries the CA pinned by the token and whose
/// certificate that CA signed for [`SERVER_NAME`].
#[derive(Debug)]
struct PinnedCa {
    hash: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| sha256_hex(c) == self.hash)
            .ok_or_else(|| {
                rustls::Error::General(
                    "the server's CA is not the one the join token names (wrong server or wrong token)"
                        .into(),
                )
            })?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        webpki.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[derive(Debug)]
pub enum LinkError {
    Io(std::io::Error),
    Tls(rustls::Error),
    Frame(FrameError),
    /// The peer closed the connection.
    Closed,
    /// The peer ended the connection with a reason.
    Refused(String),
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkError::Io(e) => write!(f, "{e}"),
            LinkError::Tls(e) => write!(f, "TLS: {e}"),
            LinkError::Frame(e) => write!(f, "{e}"),
            LinkError::Closed => write!(f, "connection closed by the peer"),
            LinkError::Refused(why) => write!(f, "refused by the peer: {why}"),
        }
    }
}

impl std::error::Error for LinkError {}

impl From<std::io::Error> for LinkError {
    fn from(e: std::io::Error) -> Self {
        LinkError::Io(e)
    }
}

impl From<FrameError> for LinkError {
    fn from(e: FrameError) -> Self {
        LinkError::Frame(e)
    }
}

/// Bytes a link moved, for the heartbeat budget.
#[derive(Debug, Default, Clone, Copy)]
pub struct Traffic {
    pub sent: u64,
    pub received: u64,
}

/// One TLS connection carrying `Message` frames.
pub struct Link {
    io: Async<TcpStream>,
    tls: rustls::Connection,
    /// Decrypted bytes not yet a whole frame.
    plain: Vec<u8>,
    pub traffic: Traffic,
}

impl Link {
    /// Runs the TLS handshake to its end.
    pub async fn handshake(
        io: Async<TcpStream>,
        tls: impl Into<rustls::Connection>,
    ) -> Result<Link, LinkError> {
        let mut link = Link {
            io,
            tls: tls.into(),
            plain: Vec::new(),
            traffic: Traffic::default(),
        };
        while link.tls.is_handshaking() {
            link.flush().await?;
            if link.tls.is_handshaking() && link.tls.wants_read() {
                link.read_tls().await?;
            }
        }
        link.flush().await?;
        Ok(link)
    }

    /// The client certificate the peer showed (server side).
    pub fn peer_certificate(&self) -> Option<&CertificateDer<'static>> {
        self.tls.peer_certificates()?.first()
    }

    async fn flush(&mut self) -> Result<(), LinkError> {
        let (io, tls) = (&self.io, &mut self.tls);
        while tls.wants_write() {
            let n = io.write_with(|mut s| tls.write_tls(&mut s)).await?;
            self.traffic.sent += n as u64;
        }
        Ok(())
    }

    async fn read_tls(&mut self) -> Result<(), LinkError> {
        let (io, tls) = (&self.io, &mut self.tls);
        let n = io.read_with(|mut s| tls.read_tls(&mut s)).await?;
        if n == 0 {
            return Err(LinkError::Closed);
        }
        self.traffic.received += n as u64;
        if let Err(e) = self.tls.process_new_packets() {
            // Tell the peer why (the alert rustls queued), then give up.
            let _ = self.flush().await;
            return Err(LinkError::Tls(e));
        }
        Ok(())
    }

    pub async fn send(&mut self, msg: &Message) -> Result<(), LinkError> {
        let bytes = protocol::encode(msg)?;
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let n = self.tls.writer().write(rest)?;
            rest = &rest[n..];
            self.flush().await?;
        }
        Ok(())
    }

    /// The next message. Cancel-safe: bytes already read stay buffered.
    pub async fn recv(&mut self) -> Result<Message, LinkError> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(msg) = protocol::decode(&mut self.plain)? {
                if let Message::Refused { reason } = msg {
                    return Err(LinkError::Refused(reason));
                }
                return Ok(msg);
            }
            match self.tls.reader().read(&mut chunk) {
                Ok(0) => return Err(LinkError::Closed),
                Ok(n) => self.plain.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.read_tls().await?;
                    self.flush().await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Sends why the connection ends, and closes it.
    pub async fn refuse(&mut self, reason: &str) {
        let _ = self
            .send(&Message::Refused {
                reason: reason.to_string(),
            })
            .await;
        self.tls.send_close_notify();
        let _ = self.flush().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::join::{Identity, Registry, tests::Dir};
    use rustls::{ClientConnection, ServerConnection};

    struct Cluster {
        dir: Dir,
        ca_pem: String,
        server: Arc<ServerConfig>,
    }

    fn cluster(tag: &str) -> Cluster {
        let dir = Dir::new(tag);
        let ca_pem = std::fs::read_to_string(dir.0.join("tls/ca.crt")).unwrap();
        let serving = crate::pki::serving_cert(&dir.0, &[SERVER_NAME.into()]).unwrap();
        let mut chain = certs_from_pem(&serving.cert_pem).unwrap();
        chain.extend(certs_from_pem(&ca_pem).unwrap());
        let key = key_from_pem(&serving.key_pem).unwrap();
        let server = server_config(&ca_pem, chain, key).unwrap();
        Cluster {
            dir,
            ca_pem,
            server,
        }
    }

    fn ca_hash(c: &Cluster) -> String {
        sha256_hex(&certs_from_pem(&c.ca_pem).unwrap()[0])
    }

    /// A node identity issued by `c`'s registry.
    fn identity(c: &Cluster, node: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let (key, public) = Identity::new_key().unwrap();
        let pem = Registry::open(&c.dir.0)
            .unwrap()
            .issue(node, &public)
            .unwrap();
        (
            certs_from_pem(&pem).unwrap(),
            key_from_pem(&key.serialize_pem()).unwrap(),
        )
    }

    fn feed(
        to: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl Sized>>,
        mut bytes: &[u8],
    ) -> Result<(), rustls::Error> {
        while !bytes.is_empty() {
            to.read_tls(&mut bytes).unwrap();
            to.process_new_packets()?;
        }
        Ok(())
    }

    /// Moves bytes both ways until neither side has more; what the client
    /// sent is appended to `capture`.
    fn pump(
        client: &mut ClientConnection,
        server: &mut ServerConnection,
        capture: &mut Vec<u8>,
    ) -> Result<(), rustls::Error> {
        loop {
            let mut moved = false;
            while client.wants_write() {
                let mut buf = Vec::new();
                client.write_tls(&mut buf).unwrap();
                capture.extend_from_slice(&buf);
                feed(server, &buf)?;
                moved = true;
            }
            while server.wants_write() {
                let mut buf = Vec::new();
                server.write_tls(&mut buf).unwrap();
                feed(client, &buf)?;
                moved = true;
            }
            if !moved {
                return Ok(());
            }
        }
    }

    fn connect(
        c: &Cluster,
        hash: &str,
        id: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
        capture: &mut Vec<u8>,
    ) -> Result<(ClientConnection, ServerConnection), rustls::Error> {
        let mut client =
            ClientConnection::new(client_config(hash, id).unwrap(), server_name()).unwrap();
        let mut server = ServerConnection::new(c.server.clone()).unwrap();
        pump(&mut client, &mut server, capture)?;
        assert!(!client.is_handshaking() && !server.is_handshaking());
        Ok((client, server))
    }

    #[test]
    fn mutual_tls_names_the_node_and_a_join_needs_no_certificate() {
        let c = cluster("mtls");
        let id = identity(&c, "pi-1");
        let (_, server) = connect(&c, &ca_hash(&c), Some(id), &mut Vec::new()).unwrap();
        let cert = &server.peer_certificates().unwrap()[0];
        assert_eq!(
            Registry::open(&c.dir.0).unwrap().node_of(cert),
            Some("pi-1")
        );
        let (_, server) = connect(&c, &ca_hash(&c), None, &mut Vec::new()).unwrap();
        assert!(
            server.peer_certificates().is_none(),
            "a joining board shows none"
        );
    }

    #[test]
    fn a_server_with_another_ca_is_refused_before_anything_is_sent() {
        let (c, other) = (cluster("ca-a"), cluster("ca-b"));
        let mut capture = Vec::new();
        let err = connect(&c, &ca_hash(&other), None, &mut capture).unwrap_err();
        assert!(
            err.to_string().contains("not the one the join token names"),
            "{err}"
        );
    }

    #[test]
    fn a_client_certificate_from_another_ca_is_refused() {
        let (c, other) = (cluster("client-a"), cluster("client-b"));
        let stranger = identity(&other, "pi-1");
        assert!(connect(&c, &ca_hash(&c), Some(stranger), &mut Vec::new()).is_err());
    }

    #[test]
    fn a_replayed_session_is_refused_and_yields_nothing() {
        let c = cluster("replay");
        let id = identity(&c, "pi-1");
        let mut capture = Vec::new();
        let (mut client, mut server) = connect(&c, &ca_hash(&c), Some(id), &mut capture).unwrap();
        client
            .writer()
            .write_all(&protocol::encode(&Message::Heartbeat).unwrap())
            .unwrap();
        pump(&mut client, &mut server, &mut capture).unwrap();
        let mut got = Vec::new();
        let _ = server.reader().read_to_end(&mut got);
        assert!(!got.is_empty(), "the original session carried the message");

        // The same bytes to a fresh server: its new handshake keys do not
        // match the recorded client's, so it fails before any plaintext.
        let mut fresh = ServerConnection::new(c.server.clone()).unwrap();
        let result = feed(&mut fresh, &capture);
        assert!(result.is_err(), "a replayed handshake must fail");
        let mut replayed = Vec::new();
        let _ = fresh.reader().read_to_end(&mut replayed);
        assert!(replayed.is_empty());
    }

    #[test]
    fn token_round_trips_and_bad_tokens_say_why() {
        let t = Token::new(b"ca", "s3cret");
        assert_eq!(t.ca_hash.len(), 64);
        assert_eq!(t.to_string().parse::<Token>().unwrap(), t);
        for bad in [
            "abc",
            "K10zz::x",
            &format!("K10{}", t.ca_hash),
            &format!("K10{}::", t.ca_hash),
        ] {
            let e = bad.parse::<Token>().unwrap_err().to_string();
            assert!(e.starts_with("bad join token"), "{bad}: {e}");
        }
    }
}
