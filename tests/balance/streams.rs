//! Least request counts a request until its response ends: an endpoint holding long streams is the busier one.

use bytes::Bytes;
use http_body_util::Empty;

use crate::common::*;
use crate::support::*;

/// The `/lr/endless` streams each pod holds open (their heads answered,
/// their bodies never ending), counted by the pods.
fn streams(w: &World) -> [usize; 2] {
    [0, 1].map(|i| w.pods[i].requests_for("/lr/endless"))
}

/// SPEC (Balancing): `least_request` counts a request in flight until its
/// response is over, as Envoy's least request counts a stream until it
/// ends. Two pods, on 127.0.0.2 and .3: once pod0 holds one more endless
/// stream than pod1, every request answered in full one after the other
/// goes to pod1, the one with fewer. The count used to end with the
/// response head: the streams counted nothing, and about half the
/// requests went to pod0.
#[tokio::test]
async fn least_request_counts_a_streamed_response_until_it_ends() {
    let p = Pods::new();
    let pods = vec![
        p.pod_at("127.0.0.2", "pod0").await,
        p.pod_at("127.0.0.3", "pod1").await,
    ];
    let upstreams = rr_and_lr(&pods, &pods, "");
    let w = p.serve(RR_AND_LR, &upstreams, pods).await;
    // Streams opened one after the other, each held open, until pod0
    // holds one more (where a pick between even counts went to pod0).
    let mut held = Vec::new();
    for _ in 0..64 {
        let [on0, on1] = streams(&w);
        if on0 == on1 + 1 {
            break;
        }
        let mut send = client(&w).await;
        let req = http::Request::get("/lr/endless")
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = within_deadline("an endless stream's head", send.send_request(req)).await;
        let resp = resp.unwrap();
        assert_eq!(resp.status(), 200);
        held.push((send, resp));
    }
    let [on0, on1] = streams(&w);
    assert_eq!(on0, on1 + 1, "pod0 never held one stream more");
    let mut send = client(&w).await;
    let mut answered = [0usize; 2];
    for _ in 0..20 {
        let (status, pod) = get_pod(&mut send, "/lr/x").await;
        assert_eq!(status, 200);
        answered[usize::from(pod.as_deref() == Some("pod1"))] += 1;
    }
    assert_eq!(
        answered,
        [0, 20],
        "requests to pod0 and pod1 while pod0 held {on0} streams and pod1 {on1}"
    );
}
