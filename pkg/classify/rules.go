package classify

// rule identifies one named feature beyond words. Its weight is learned with
// the token weights (see Train), except for the malicious rules, whose weight
// is Config.MaliciousWeight because the training corpus has too few examples
// to learn it.
type rule uint8

// The rules. Names are the symbols a Verdict reports; they are stable
// because the model file stores rule weights by name.
const (
	ruleFromNameOtherDomain rule = iota
	ruleFromNameHasAddress
	ruleFromNoName
	ruleFromLocalDigits
	ruleFromMissing
	ruleReplyToOtherDomain
	ruleMissingMessageID
	ruleMissingDate
	ruleBadDate
	ruleMissingTo
	ruleToUndisclosed
	ruleMessageIDOdd
	rulePriorityHigh
	ruleSubjectShouting
	ruleSubjectExclaim
	ruleSubjectMoney
	ruleSubjectEncodedASCII
	ruleSubjectEncodedMixed
	ruleSubjectTrailingID
	ruleSubjectEmpty
	ruleSubjectReply
	ruleHTMLOnly
	ruleHTMLLittleText
	ruleImageOnly
	ruleInvisibleText
	ruleInvisibleTextMany
	ruleHTMLForm
	ruleBase64Text
	ruleBodyShouting
	ruleBodyExclaimMany
	ruleURLIPHost
	ruleURLShortener
	ruleURLRedirector
	ruleURLObfuscated
	ruleURLUserInfo
	ruleURLManyOneHost
	ruleLinkTextMismatch
	ruleURLFromDomain
	ruleAttachArchive
	ruleAttachTypeMismatch
	rulePhishPhrase
	ruleMIMEDefect
	ruleNoText
	// Malicious rules: any of them makes the label malicious.
	ruleAttachExecutable
	ruleAttachArchiveExecutable
	ruleAttachMacro
	rulePhishCredentials
	numRules
)

// firstMalicious is the first rule that makes a message malicious.
const firstMalicious = ruleAttachExecutable

// ruleInfo is the symbol name and meaning of each rule.
var ruleInfo = [numRules]struct{ name, doc string }{
	ruleFromNameOtherDomain:     {"FROM_NAME_OTHER_DOMAIN", "From display name names a domain other than the address's"},
	ruleFromNameHasAddress:      {"FROM_NAME_HAS_ADDRESS", "From display name contains an e-mail address"},
	ruleFromNoName:              {"FROM_NO_NAME", "From has no display name"},
	ruleFromLocalDigits:         {"FROM_LOCAL_DIGITS", "From local part has three or more digits"},
	ruleFromMissing:             {"FROM_MISSING", "no parsable From"},
	ruleReplyToOtherDomain:      {"REPLYTO_OTHER_DOMAIN", "Reply-To on another registered domain than From"},
	ruleMissingMessageID:        {"MISSING_MESSAGE_ID", "no Message-ID"},
	ruleMissingDate:             {"MISSING_DATE", "no Date"},
	ruleBadDate:                 {"BAD_DATE", "Date does not parse as RFC 5322"},
	ruleMissingTo:               {"MISSING_TO", "no To or Cc"},
	ruleToUndisclosed:           {"TO_UNDISCLOSED", "To is empty or undisclosed recipients"},
	ruleMessageIDOdd:            {"MESSAGE_ID_ODD", "Message-ID without <local@domain> form"},
	rulePriorityHigh:            {"PRIORITY_HIGH", "X-Priority 1 or 2, or Importance high"},
	ruleSubjectShouting:         {"SUBJECT_SHOUTING", "Subject mostly capitals"},
	ruleSubjectExclaim:          {"SUBJECT_EXCLAIM", "Subject has an exclamation mark"},
	ruleSubjectMoney:            {"SUBJECT_MONEY", "Subject has $, %, or a money word"},
	ruleSubjectEncodedASCII:     {"SUBJECT_ENCODED_ASCII", "Subject encoded-words that decode to plain ASCII (needless encoding hides words)"},
	ruleSubjectEncodedMixed:     {"SUBJECT_ENCODED_MIXED", "Subject mixes encoded-word charsets or encodings"},
	ruleSubjectTrailingID:       {"SUBJECT_TRAILING_ID", "Subject ends in spaces and a random-looking tag"},
	ruleSubjectEmpty:            {"SUBJECT_EMPTY", "no or empty Subject"},
	ruleSubjectReply:            {"SUBJECT_REPLY", "Subject starts with Re: or Fwd:"},
	ruleHTMLOnly:                {"HTML_ONLY", "HTML without a text/plain alternative"},
	ruleHTMLLittleText:          {"HTML_LITTLE_TEXT", "HTML-only mail with under 200 characters of visible text"},
	ruleImageOnly:               {"IMAGE_ONLY", "images and under 20 words of text"},
	ruleInvisibleText:           {"INVISIBLE_TEXT", "HTML text hidden by style (display:none, tiny font, white on white)"},
	ruleInvisibleTextMany:       {"INVISIBLE_TEXT_MANY", "over 200 characters of hidden HTML text"},
	ruleHTMLForm:                {"HTML_FORM", "HTML form in the message"},
	ruleBase64Text:              {"BASE64_TEXT", "text part base64 encoded"},
	ruleBodyShouting:            {"BODY_SHOUTING", "over 30 % of body letters are capitals"},
	ruleBodyExclaimMany:         {"BODY_EXCLAIM_MANY", "ten or more exclamation marks in the body"},
	ruleURLIPHost:               {"URL_IP_HOST", "a link to a bare IP address"},
	ruleURLShortener:            {"URL_SHORTENER", "a link through a URL shortener"},
	ruleURLRedirector:           {"URL_REDIRECTOR", "a link that carries another URL (redirector)"},
	ruleURLObfuscated:           {"URL_OBFUSCATED", "a link written to defeat matching (hxxp, [.], integer IP, %-encoded host)"},
	ruleURLUserInfo:             {"URL_USERINFO", "a link with user@ before the host"},
	ruleURLManyOneHost:          {"URL_MANY_ONE_HOST", "ten or more links to one host"},
	ruleLinkTextMismatch:        {"LINK_TEXT_MISMATCH", "link text shows one domain, the target is another"},
	ruleURLFromDomain:           {"URL_FROM_DOMAIN", "links point to the From domain"},
	ruleAttachArchive:           {"ATTACH_ARCHIVE", "an archive attachment"},
	ruleAttachTypeMismatch:      {"ATTACH_TYPE_MISMATCH", "attachment content disagrees with its declared type"},
	rulePhishPhrase:             {"PHISH_PHRASE", "asks to verify or update an account or password, and has a link or form"},
	ruleMIMEDefect:              {"MIME_DEFECT", "malformed MIME (bad encoding, boundaries, charset)"},
	ruleNoText:                  {"NO_TEXT", "no readable text at all"},
	ruleAttachExecutable:        {"ATTACH_EXECUTABLE", "an executable or script attachment"},
	ruleAttachArchiveExecutable: {"ATTACH_ARCHIVE_EXECUTABLE", "an archive listing an executable"},
	ruleAttachMacro:             {"ATTACH_MACRO", "an Office document with macros"},
	rulePhishCredentials:        {"PHISH_CREDENTIALS", "asks for credentials with a password form or a deceptive link"},
}

// Rules returns the name and description of every rule symbol, for
// documentation and operators.
func Rules() []RuleDoc {
	out := make([]RuleDoc, numRules)
	for i := range numRules {
		out[i] = RuleDoc{Name: ruleInfo[i].name, Doc: ruleInfo[i].doc, Malicious: i >= firstMalicious}
	}
	return out
}

// RuleDoc describes a rule symbol.
type RuleDoc struct {
	Name      string
	Doc       string
	Malicious bool // makes the verdict malicious
}
