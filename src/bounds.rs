//! A request's reservation made model-specific: media parts are bounded by the model's
//! catalog entry (an image costs very different amounts on different models), and an
//! output cap above the model's own maximum is reserved at that maximum, since the
//! provider can never generate more.

use crate::catalog::{ModelPrice, DEFAULT_IMAGE_TOKENS};
use crate::error::ApiError;
use crate::request::Prepared;

/// Adds the bound of the request's media to its input reserve, and notes the model's
/// output maximum. Saturating: a huge count never wraps. Audio input to a model without
/// an audio price is refused: it would be billed at the wrong rate.
pub fn apply(prepared: &mut Prepared, model: &ModelPrice) -> Result<(), ApiError> {
    if prepared.media.audio_bytes > 0 && model.audio_input_per_mtok.is_none() {
        let msg = format!(
            "Model `{}` has no audio input price here, so it takes no audio input.",
            prepared.model
        );
        return Err(ApiError::bad_request("unsupported_input", msg).with_param("input_audio"));
    }
    let media = &prepared.media;
    let per_image = model.image_input_tokens.unwrap_or(DEFAULT_IMAGE_TOKENS);
    let per_kib = model.audio_tokens_per_kib.unwrap_or(1024);
    let images = media.images.saturating_mul(per_image);
    let audio = media.audio_bytes.div_ceil(1024).saturating_mul(per_kib);
    let added = images.saturating_add(audio);
    prepared.input_reserve = prepared.input_reserve.saturating_add(added);
    prepared.audio_reserve = audio;
    prepared.input_estimate = prepared
        .input_estimate
        .saturating_add(audio.min(media.audio_bytes / 4));
    prepared.max_output = model.max_output_tokens;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{prepare, Meter};

    fn chat(content: serde_json::Value) -> Prepared {
        let body = serde_json::json!({"model": "m", "max_tokens": 10,
            "messages": [{"role": "user", "content": content}]});
        prepare("/v1/chat/completions", body.to_string().as_bytes()).unwrap()
    }

    fn price(json: serde_json::Value) -> ModelPrice {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn images_are_bounded_by_the_model_and_conservatively_by_default() {
        let two = serde_json::json!([
            {"type": "image_url", "image_url": {"url": "https://x/a.png"}},
            {"type": "image_url", "image_url": {"url": "https://x/b.png"}}]);
        let mut p = chat(two.clone());
        let text = p.input_reserve;
        let model = price(serde_json::json!({"image_input_tokens": 1445}));
        apply(&mut p, &model).unwrap();
        assert_eq!(p.input_reserve, text + 2 * 1445);
        let mut p = chat(two);
        apply(&mut p, &ModelPrice::default()).unwrap();
        assert_eq!(p.input_reserve, text + 2 * 48_169);
    }

    #[test]
    fn audio_is_bounded_by_its_bytes_and_files_are_unbounded() {
        let audio = serde_json::json!([{"type": "input_audio",
            "input_audio": {"data": "A".repeat(4096), "format": "wav"}}]);
        let mut p = chat(audio);
        let text = p.input_reserve;
        let model =
            price(serde_json::json!({"audio_tokens_per_kib": 3, "audio_input_per_mtok": "40"}));
        apply(&mut p, &model).unwrap();
        assert_eq!(p.input_reserve, text + 4 * 3);
        assert_eq!(p.media.unbounded, None);
        // a model with no audio price takes no audio: it would be billed as text
        let e = apply(&mut p.clone(), &ModelPrice::default()).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input_audio"));
        let file = serde_json::json!([{"type": "file", "file": {"file_id": "file-abc"}}]);
        assert_eq!(chat(file).media.unbounded, Some("file"));
        let pdf = serde_json::json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user",
            "content": [{"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}}]}]});
        let p = prepare("/v1/messages", pdf.to_string().as_bytes()).unwrap();
        assert_eq!(
            (p.meter, p.media.unbounded),
            (Meter::Messages, Some("document"))
        );
        let text_doc = serde_json::json!([{"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain words"}}]);
        assert_eq!(chat(text_doc).media.unbounded, None);
    }

    #[test]
    fn caps_that_disagree_are_refused_and_the_honoured_spelling_carries_the_cap() {
        let body = br#"{"model":"m","max_tokens":10,"max_completion_tokens":4000,"messages":[]}"#;
        let e = prepare("/v1/chat/completions", body).unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("max_tokens")));
        assert!(e.message.contains("4000"), "{}", e.message);
        let same = br#"{"model":"m","max_tokens":10,"max_completion_tokens":10,"messages":[]}"#;
        assert_eq!(
            prepare("/v1/chat/completions", same).unwrap().output_cap,
            Some(10)
        );
        let mut json =
            crate::request::parse_object(br#"{"model":"m","max_completion_tokens":7}"#).unwrap();
        crate::request::honour_cap(&mut json, "max_tokens").unwrap();
        assert_eq!(
            (
                json["max_tokens"].as_u64(),
                json["max_completion_tokens"].as_u64()
            ),
            (Some(7), Some(7))
        );
    }

    #[test]
    fn caps_above_the_models_maximum_are_lowered_in_every_spelling() {
        let mut json = crate::request::parse_object(
            br#"{"model":"m","max_tokens":900000,"max_completion_tokens":900000}"#,
        )
        .unwrap();
        crate::request::clamp_caps(&mut json, 16_384).unwrap();
        assert_eq!(json["max_tokens"], 16_384);
        assert_eq!(json["max_completion_tokens"], 16_384);
        let mut both = crate::request::parse_object(
            br#"{"model":"m","max_tokens":900000,"max_completion_tokens":800000}"#,
        )
        .unwrap();
        assert!(crate::request::clamp_caps(&mut both, 16_384).is_err());
    }

    #[test]
    fn output_caps_are_reserved_at_most_at_the_models_maximum() {
        let mut p = chat(serde_json::json!("hi"));
        apply(&mut p, &price(serde_json::json!({"max_output_tokens": 4}))).unwrap();
        assert_eq!(p.ask().max_output, Some(4));
        let plan = crate::catalog::Plan::default();
        assert_eq!(crate::counter_state::reserve_of(&plan, &p.ask()).output, 4);
    }
}

/// For random request shapes, the most a provider could bill never exceeds what the
/// request reserves. The provider here is the worst a real one can be: a token per
/// byte of text (byte-level BPE never does worse), a few tokens of framing per
/// message, each image at the model's most, and every choice run to its cap.
#[cfg(test)]
mod worst_case {
    use super::*;
    use crate::catalog::Plan;
    use crate::counter_state::reserve_of;
    use crate::request::prepare;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn part() -> impl Strategy<Value = Value> {
        prop_oneof![
            "[ -~é漢]{0,40}".prop_map(|t| json!({"type": "text", "text": t})),
            Just(json!({"type": "image_url", "image_url": {"url": "https://x/i.png"}})),
        ]
    }

    fn content() -> impl Strategy<Value = Value> {
        prop_oneof![
            "[ -~é漢]{0,60}".prop_map(Value::from),
            proptest::collection::vec(part(), 0..4).prop_map(Value::from),
        ]
    }

    /// What the worst provider bills for `body` on a model with these limits.
    fn billed(body: &Value, image: u64, max_out: u64) -> (u64, u64) {
        let mut input = 3; // reply priming
        for m in body["messages"].as_array().unwrap() {
            input += 3 + m["role"].as_str().unwrap().len() as u64;
            match &m["content"] {
                Value::String(s) => input += s.len() as u64,
                Value::Array(parts) => {
                    for p in parts {
                        input += p["text"].as_str().map_or(image, |t| t.len() as u64);
                    }
                }
                _ => {}
            }
        }
        let cap = body["max_tokens"].as_u64().unwrap_or(40).min(max_out);
        (input, cap * body["n"].as_u64().unwrap_or(1))
    }

    proptest! {
        #[test]
        fn the_reservation_bounds_what_any_provider_could_bill(
            messages in proptest::collection::vec(("user|assistant|system", content()), 0..5),
            cap in proptest::option::of(0u64..5_000),
            n in 1u64..6,
            image in 1u64..60_000,
            max_out in 1u64..10_000,
        ) {
            let messages: Vec<Value> = messages
                .into_iter()
                .map(|(role, content)| json!({"role": role, "content": content}))
                .collect();
            let mut body = json!({"model": "m", "messages": messages, "n": n});
            if let Some(cap) = cap {
                body["max_tokens"] = json!(cap);
            }
            let mut p = prepare("/v1/chat/completions", body.to_string().as_bytes()).unwrap();
            let model = ModelPrice {
                image_input_tokens: Some(image),
                max_output_tokens: Some(max_out),
                ..ModelPrice::default()
            };
            apply(&mut p, &model).unwrap();
            let plan = Plan { default_max_output_tokens: 40, ..Plan::default() };
            let reserved = reserve_of(&plan, &p.ask());
            let (input, output) = billed(&body, image, max_out);
            prop_assert!(reserved.input >= input, "input {} < {input}", reserved.input);
            prop_assert!(reserved.output >= output, "output {} < {output}", reserved.output);
        }
    }
}
