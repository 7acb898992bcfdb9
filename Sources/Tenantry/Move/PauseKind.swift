/// Why a tenant's stream is paused (`tenantry.capture_state.pause_kind`): a code the relay,
/// `dlq replay`/`discard` and the rollback checks test, instead of the words of `paused_reason`
/// (which is for people).
enum PauseKind: String, Sendable {
    /// A change of this stream failed past its retries (or touched another tenant's row).
    case deadLetter = "dead_letter"
    /// Mirrored into unified: the tenant's reverse stream holds a dead letter.
    case reverseDeadLetter = "reverse_dead_letter"
    /// Paused by retire-legacy while it archives and deletes the unified rows.
    case retirement
    /// Paused by an operator (`dual-write disable`).
    case `operator`

    /// The kinds a replay or discard resumes.
    static let deadLetters = [PauseKind.deadLetter.rawValue, PauseKind.reverseDeadLetter.rawValue]
}
