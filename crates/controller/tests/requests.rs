//! Requests that travel to the active controller as JSON decide exactly as
//! the same calls made in-process.

use strom_controller::{
    Controller, ControllerConfig, ControllerReply, ControllerRequest, Heartbeat, NewTopic,
    Registration,
};
use strom_metadata::{Endpoint, MetadataImage};
use uuid::Uuid;

fn over_the_wire(
    controller: &mut Controller,
    request: &ControllerRequest,
    now: i64,
) -> Result<ControllerReply, strom_controller::ControllerError> {
    let sent: ControllerRequest =
        serde_json::from_str(&serde_json::to_string(request).unwrap()).unwrap();
    let answer = controller.handle(sent, now).map(|decision| decision.reply);
    serde_json::from_str(&serde_json::to_string(&answer).unwrap()).unwrap()
}

#[test]
fn requests_sent_as_json_decide_as_calls_in_process() {
    let config = ControllerConfig::default();
    let mut direct = Controller::new(config.clone(), MetadataImage::default(), 0);
    let mut remote = Controller::new(config, MetadataImage::default(), 0);
    let mut epochs = Vec::new();
    for node_id in 1..=3 {
        let registration = Registration {
            node_id,
            incarnation_id: Uuid::new_v4(),
            endpoints: vec![Endpoint {
                name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9000 + node_id as u16,
            }],
            rack: None,
            directory_id: Uuid::from_u128(node_id as u128),
        };
        let expected = direct.register_broker(registration.clone(), 10).unwrap();
        let reply = over_the_wire(
            &mut remote,
            &ControllerRequest::RegisterBroker(registration),
            10,
        )
        .unwrap();
        assert_eq!(reply, ControllerReply::Registered(expected.reply));
        epochs.push((node_id, expected.reply));
    }
    for &(node_id, broker_epoch) in &epochs {
        let heartbeat = Heartbeat {
            node_id,
            broker_epoch,
            metadata_offset: direct.image().applied,
            want_fence: false,
            want_shutdown: false,
        };
        let expected = direct.heartbeat(heartbeat, 20).unwrap().reply;
        let reply =
            over_the_wire(&mut remote, &ControllerRequest::Heartbeat(heartbeat), 20).unwrap();
        assert_eq!(reply, ControllerReply::Heartbeat(expected));
        assert!(!expected.is_fenced);
    }
    let topic = NewTopic {
        name: "orders".into(),
        partitions: Some(3),
        replication_factor: Some(3),
        ..NewTopic::default()
    };
    let expected = direct.create_topic(topic.clone(), false).unwrap().reply;
    let request = ControllerRequest::CreateTopic {
        topic,
        validate_only: false,
    };
    let reply = over_the_wire(&mut remote, &request, 30).unwrap();
    let ControllerReply::Topic(created) = reply else {
        panic!("CreateTopics answered {reply:?}");
    };
    assert_eq!(created.partitions, expected.partitions);
    assert_eq!(created.name, "orders");
    // A refusal comes back as the same error.
    let refused = over_the_wire(&mut remote, &request, 40).unwrap_err();
    assert_eq!(
        refused.kind,
        strom_controller::ErrorKind::TopicAlreadyExists,
        "{refused}"
    );
    assert_eq!(
        remote.image().brokers,
        direct.image().brokers,
        "both controllers hold the same brokers"
    );
    assert_eq!(remote.image().applied, direct.image().applied);
}
