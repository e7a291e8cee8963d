<?php
// Signature vectors made with the PHP sample of Bird's "Verifying a webhook subscription"
// page (https://docs.bird.com/api/notifications-api/api-reference/webhooks/verifying-a-webhook),
// independent of this project's Python code.
//
//   php tests/vectors/bird_php_sample.php > tests/vectors/bird_php_sample.json
//
// verifyWebhookSignature() is Bird's sample as documented; signWebhook() is the same
// computation turned around (what Bird puts in messagebird-signature). Every vector is
// checked with the documented verifier before it is written, and a changed URL must fail.

function verifyWebhookSignature(
    string $headerSignature,
    string $headerTimestamp,
    string $receivedBody,
    string $requestedUrl,
    string $signingKey
): bool {
    $receivedDecodedSignature = base64_decode($headerSignature);
    $bodyHash = hash('sha256', $receivedBody, true);
    $computedSignature = hash_hmac(
        'sha256',
        sprintf("%s\n%s\n%s", $headerTimestamp, $requestedUrl, $bodyHash),
        $signingKey,
        true
    );
    return hash_equals($computedSignature, $receivedDecodedSignature);
}

function signWebhook(string $timestamp, string $url, string $body, string $signingKey): string
{
    $bodyHash = hash('sha256', $body, true);
    return base64_encode(
        hash_hmac('sha256', sprintf("%s\n%s\n%s", $timestamp, $url, $bodyHash), $signingKey, true)
    );
}

$channel = '{"service":"channels","event":"channel.updated","payload":{"id":"c0ffee00-3333-4d4e-9f00-aaaabbbbcccc","platformId":"sms","status":"active","updatedAt":"2025-07-05T19:09:12.400Z"}}';
$cases = [
    ['docs example URL', 'secureSigningKey', '1719823259', 'https://domain.com/webhook/bird', $channel],
    ['trailing slash', 'secureSigningKey', '1719823259', 'https://domain.com/webhook/bird/', $channel],
    ['empty body', 'secureSigningKey', '1719823259', 'https://domain.com/webhook/bird', ''],
    ['query string', 'PlLrKaqvZNRR5zAjm42ZT6q1SQxgbbGd', '1751742552', 'https://hooks.example.com:8443/webhooks/bird?workspace=ws-1&x=%20y', $channel],
    ['non-ASCII URL and body', 'secureSigningKey', '1751742552', 'https://hooks.example.com/webhooks/bïrd?naam=zoë', '{"payload":{"name":"Café ☕ 東京"}}'],
    ['non-ASCII key', 'sleutel-ë-🔑', '1751742552', 'https://hooks.example.com/webhooks/bird', $channel],
    ['body not UTF-8', 'secureSigningKey', '0', 'http://127.0.0.1:8080/webhooks/bird', "\xff\xfe\x00{"],
];

$vectors = [];
foreach ($cases as [$name, $key, $timestamp, $url, $body]) {
    $signature = signWebhook($timestamp, $url, $body, $key);
    if (!verifyWebhookSignature($signature, $timestamp, $body, $url, $key)) {
        fwrite(STDERR, "the documented verifier refuses $name\n");
        exit(1);
    }
    if (verifyWebhookSignature($signature, $timestamp, $body, $url . 'x', $key)) {
        fwrite(STDERR, "the documented verifier ignores the URL in $name\n");
        exit(1);
    }
    $vectors[] = [
        'name' => $name,
        'signingKey' => $key,
        'timestamp' => $timestamp,
        'url' => $url,
        'bodyBase64' => base64_encode($body),
        'signature' => $signature,
    ];
}

echo json_encode(
    ['madeWith' => 'PHP ' . PHP_VERSION . ', tests/vectors/bird_php_sample.php', 'vectors' => $vectors],
    JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE
), "\n";
